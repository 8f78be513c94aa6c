"""The sandbox: a Bot API-compatible server, its limits and faults, and the page API.

Most tests speak raw HTTP to check Telegram's shapes and errors; the last ones drive
python-telegram-bot itself against the sandbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import struct
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Update,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from yarl import URL

from bot.services import broadcasts, catalogue, enrolment, guard, leaves, members
from sandbox import demo, server
from sandbox.entities import EntityParseError, detect, parse_html, sort_entities, to_html
from sandbox.server import Faults, Limits, Sandbox, create_app
from storage.db import Database
from storage.models import BroadcastStatus
from tests.e2e import Person

TOKEN = "123456789:SANDBOX-test-token"
BOT = "kehou_test_bot"
MOM, ANNA, GROUP = 101, 102, -2001
JSON = dict[str, Any]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_sandbox(**options: Any) -> Sandbox:
    sandbox = Sandbox(TOKEN, bot_username=BOT, **options)
    sandbox.add_user(MOM, "张琪妈妈")
    sandbox.add_user(ANNA, "Anna", last_name="Li", language_code="en")
    sandbox.add_group(GROUP, "三年级2班家长群", [MOM, ANNA])
    return sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    return make_sandbox(webhook_backoff=0.01)


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


async def call(client: Client, method: str, token: str = TOKEN, **params: Any) -> tuple[int, JSON]:
    response = await client.post(f"/bot{token}/{method}", json=params)
    return response.status, await response.json()


async def ok(client: Client, method: str, **params: Any) -> Any:
    status, body = await call(client, method, **params)
    assert status == 200 and body["ok"] is True, body
    return body["result"]


async def fails(client: Client, method: str, **params: Any) -> JSON:
    """The error answer of a call that must fail; checks Telegram's error shape."""
    status, body = await call(client, method, **params)
    assert body["ok"] is False and body["error_code"] == status, body
    assert set(body) <= {"ok", "error_code", "description", "parameters"}
    return body


def png(width: int = 2, height: int = 1) -> bytes:
    """A real (tiny) PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------------------
# The Bot API: shapes and errors


async def test_get_me_wrong_token_and_unknown_method(client: Client) -> None:
    me = await ok(client, "getMe")
    assert me["id"] == 123456789 and me["is_bot"] is True and me["username"] == BOT
    assert await ok(client, "GETME") == me  # method names are case-insensitive

    status, body = await call(client, "getMe", token="123456789:wrong")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    status, body = await call(client, "sendCarrierPigeon", chat_id=MOM)
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})

    # Form-encoded, as python-telegram-bot sends it, and GET with a query string work too.
    response = await client.post(
        f"/bot{TOKEN}/sendMessage", data={"chat_id": str(MOM), "text": "表单"}
    )
    assert (await response.json())["result"]["text"] == "表单"
    response = await client.get(f"/bot{TOKEN}/getMe")
    assert (await response.json())["result"]["id"] == 123456789


async def test_send_message_in_private_and_group_chats(client: Client, sandbox: Sandbox) -> None:
    sent = await ok(client, "sendMessage", chat_id=MOM, text="  您好！\n")
    assert sent["message_id"] == 1 and sent["text"] == "您好！"  # trimmed, as Telegram does
    assert sent["from"]["username"] == BOT and sent["from"]["is_bot"] is True
    assert sent["chat"] == {"id": MOM, "first_name": "张琪妈妈", "type": "private"}
    assert isinstance(sent["date"], int) and "entities" not in sent

    asked = await sandbox.user_sends(ANNA, GROUP, "/help@kehou_test_bot")
    reply = await ok(
        client,
        "sendMessage",
        chat_id=str(GROUP),
        text="Ask me in private",
        reply_parameters={"message_id": asked["message_id"]},
    )
    assert reply["chat"] == {"id": GROUP, "title": "三年级2班家长群", "type": "group"}
    assert reply["reply_to_message"]["text"] == "/help@kehou_test_bot"
    assert reply["reply_to_message"]["from"]["id"] == ANNA
    legacy = await ok(
        client, "sendMessage", chat_id=GROUP, text="again", reply_to_message_id=asked["message_id"]
    )
    assert legacy["reply_to_message"]["message_id"] == asked["message_id"]

    body = await fails(
        client, "sendMessage", chat_id=GROUP, text="x", reply_parameters={"message_id": 999}
    )
    assert body["description"] == "Bad Request: message to be replied not found"
    loose = await ok(
        client,
        "sendMessage",
        chat_id=GROUP,
        text="x",
        reply_parameters={"message_id": 999, "allow_sending_without_reply": True},
    )
    assert "reply_to_message" not in loose

    body = await fails(client, "sendMessage", chat_id=424242, text="hello?")
    assert body == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    body = await fails(client, "sendMessage", text="no chat")
    assert body["description"] == "Bad Request: chat_id is empty"


async def test_text_is_checked(client: Client) -> None:
    for text in ("", "   \n"):
        body = await fails(client, "sendMessage", chat_id=MOM, text=text)
        assert body["description"] == "Bad Request: message text is empty"
    body = await fails(client, "sendMessage", chat_id=MOM)
    assert body["description"] == "Bad Request: message text is empty"
    body = await fails(client, "sendMessage", chat_id=MOM, text="字" * 4097)
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message is too long",
    }
    assert len((await ok(client, "sendMessage", chat_id=MOM, text="字" * 4096))["text"]) == 4096
    # The limit is on the text after entity parsing: tags do not count.
    tagged = "<b>" + "字" * 4000 + "</b>" + "<i>x</i>" * 12
    assert (await ok(client, "sendMessage", chat_id=MOM, text=tagged, parse_mode="HTML"))[
        "entities"
    ]


def test_html_to_entities_counts_utf16() -> None:
    text, entities = parse_html("<b>你好</b> 😀 <i>世界</i> 👨‍👩‍👧 <u>好</u>")
    assert text == "你好 😀 世界 👨‍👩‍👧 好"
    assert entities == [
        {"offset": 0, "length": 2, "type": "bold"},
        # "你好 😀 " is 2 + 1 + 2 (a surrogate pair) + 1 UTF-16 code units.
        {"offset": 6, "length": 2, "type": "italic"},
        # The family emoji is three astral characters joined by two ZWJs: 8 units.
        {"offset": 18, "length": 1, "type": "underline"},
    ]


def test_html_supported_tags() -> None:
    source = (
        "<strong>b</strong><em>i</em><ins>u</ins><del>s</del><strike>s</strike><s>s</s>"
        '<a href="https://example.com/路径?q=1&amp;r=2">链接</a><code>c</code>'
        '<pre><code class="language-python">print("你好")</code></pre><pre>plain</pre>'
        '<tg-spoiler>秘</tg-spoiler><span class="tg-spoiler">密</span>'
        "<blockquote>引用</blockquote>&lt;&gt;&amp;&quot;&#20320;&#x597D;&nbsp;"
    )
    text, entities = parse_html(source)
    assert text == 'biusss链接cprint("你好")plain秘密引用<>&"你好&nbsp;'
    assert sort_entities(entities) == [
        {"offset": 0, "length": 1, "type": "bold"},
        {"offset": 1, "length": 1, "type": "italic"},
        {"offset": 2, "length": 1, "type": "underline"},
        {"offset": 3, "length": 1, "type": "strikethrough"},
        {"offset": 4, "length": 1, "type": "strikethrough"},
        {"offset": 5, "length": 1, "type": "strikethrough"},
        {"offset": 6, "length": 2, "type": "text_link", "url": "https://example.com/路径?q=1&r=2"},
        {"offset": 8, "length": 1, "type": "code"},
        {"offset": 9, "length": 11, "type": "pre", "language": "python"},
        {"offset": 20, "length": 5, "type": "pre"},
        {"offset": 25, "length": 1, "type": "spoiler"},
        {"offset": 26, "length": 1, "type": "spoiler"},
        {"offset": 27, "length": 2, "type": "blockquote"},
    ]
    nested, found = parse_html("<b>粗<i>斜</i></b><a>https://kehou.cn</a><B>大写</B>")
    assert sort_entities(found) == [
        {"offset": 0, "length": 2, "type": "bold"},
        {"offset": 1, "length": 1, "type": "italic"},
        {"offset": 2, "length": 16, "type": "text_link", "url": "https://kehou.cn/"},
        {"offset": 18, "length": 2, "type": "bold"},
    ]
    assert nested == "粗斜https://kehou.cn大写"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("价格 < 5 元", 'Unsupported start tag "" at byte offset 7'),
        ("<b>没有结束", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("a <b", "Unclosed start tag at byte offset 2"),
    ],
)
def test_html_errors(source: str, reason: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(source)
    assert str(caught.value) == reason


async def test_send_message_with_entities(client: Client) -> None:
    sent = await ok(
        client, "sendMessage", chat_id=MOM, text="<b>你好</b> 😀 <i>世界</i>", parse_mode="HTML"
    )
    assert sent["text"] == "你好 😀 世界"
    assert sent["entities"] == [
        {"offset": 0, "length": 2, "type": "bold"},
        {"offset": 6, "length": 2, "type": "italic"},
    ]
    body = await fails(client, "sendMessage", chat_id=MOM, text="<b>粗", parse_mode="HTML")
    assert body["description"] == (
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
    )
    # Without parse_mode the text is literal and given entities are kept.
    given = [
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "italic", "offset": 3, "length": 2},
    ]
    plain = await ok(client, "sendMessage", chat_id=MOM, text="<b> 😀", entities=given)
    assert plain["text"] == "<b> 😀" and plain["entities"] == given
    # Commands and links are found by Telegram itself, except inside code.
    found = await ok(
        client,
        "sendMessage",
        chat_id=MOM,
        text="发送 /help 或看 https://kehou.cn <code>/start</code>",
        parse_mode="HTML",
    )
    kinds = [(e["type"], e["offset"], e["length"]) for e in found["entities"]]
    assert kinds == [("bot_command", 3, 5), ("url", 12, 16), ("code", 29, 6)]


def test_entities_to_safe_html() -> None:
    text = "粗 斜 <script>alert(1)</script> 😀链接 x\ny"
    entities = [
        {"type": "bold", "offset": 0, "length": 1},
        {"type": "italic", "offset": 2, "length": 1},
        {"type": "text_link", "offset": 32, "length": 2, "url": "https://kehou.cn/"},
        {"type": "text_link", "offset": 35, "length": 1, "url": "javascript:alert(1)"},
    ]
    assert to_html(text, entities) == (
        "<b>粗</b> <i>斜</i> &lt;script&gt;alert(1)&lt;/script&gt; 😀"
        '<a href="https://kehou.cn/" target="_blank" rel="noopener noreferrer">链接</a> x<br>y'
    )
    overlapping = [
        {"type": "bold", "offset": 0, "length": 3},
        {"type": "italic", "offset": 1, "length": 3},
    ]
    assert to_html("abcd", overlapping) == "<b>a<i>bc</i></b><i>d</i>"
    spoiler = to_html(
        "秘密 code",
        [
            {"type": "spoiler", "offset": 0, "length": 2},
            {"type": "pre", "offset": 3, "length": 4, "language": "py"},
        ],
    )
    assert (
        spoiler
        == '<span class="spoiler">秘密</span> <pre><code class="language-py">code</code></pre>'
    )
    assert to_html("<&>", None) == "&lt;&amp;&gt;"
    assert detect("/start@kehou_test_bot 你好", []) == [
        {"offset": 0, "length": 21, "type": "bot_command"}
    ]


async def test_reply_markup(client: Client, sandbox: Sandbox) -> None:
    buttons = [
        [{"text": "好", "callback_data": "x" * 64}, {"text": "网站", "url": "https://kehou.cn"}],
    ]
    sent = await ok(
        client, "sendMessage", chat_id=MOM, text="选择", reply_markup={"inline_keyboard": buttons}
    )
    assert sent["reply_markup"] == {"inline_keyboard": buttons}
    for data in ("x" * 65, "选" * 22, ""):  # 22 Chinese characters are 66 bytes
        too_long = {"inline_keyboard": [[{"text": "no", "callback_data": data}]]}
        body = await fails(client, "sendMessage", chat_id=MOM, text="x", reply_markup=too_long)
        assert body["description"] == "Bad Request: BUTTON_DATA_INVALID"
    bad_url = {"inline_keyboard": [[{"text": "no", "url": "javascript:alert(1)"}]]}
    assert (await fails(client, "sendMessage", chat_id=MOM, text="x", reply_markup=bad_url))[
        "error_code"
    ] == 400

    keyboard = {"keyboard": [["/help", {"text": "语言"}]], "resize_keyboard": True}
    shown = await ok(client, "sendMessage", chat_id=MOM, text="菜单", reply_markup=keyboard)
    assert "reply_markup" not in shown  # only inline keyboards belong to the message
    assert sandbox.messages(MOM)[-1]["reply_keyboard"] == [[{"text": "/help"}, {"text": "语言"}]]
    await ok(client, "sendMessage", chat_id=MOM, text="请回复", reply_markup={"force_reply": True})
    assert sandbox.messages(MOM)[-1]["reply_keyboard"] == [[{"text": "/help"}, {"text": "语言"}]]
    await ok(
        client, "sendMessage", chat_id=MOM, text="好了", reply_markup={"remove_keyboard": True}
    )
    assert sandbox.messages(MOM)[-1]["reply_keyboard"] is None


async def test_edit_and_delete_messages(client: Client, sandbox: Sandbox) -> None:
    markup = {"inline_keyboard": [[{"text": "同意", "callback_data": "agree"}]]}
    sent = await ok(client, "sendMessage", chat_id=MOM, text="请确认", reply_markup=markup)
    target = {"chat_id": MOM, "message_id": sent["message_id"]}

    edited = await ok(
        client,
        "editMessageText",
        **target,
        text="<b>已确认</b>",
        parse_mode="HTML",
        reply_markup=markup,
    )
    assert edited["text"] == "已确认" and edited["entities"][0]["type"] == "bold"
    assert edited["reply_markup"] == markup and isinstance(edited["edit_date"], int)
    body = await fails(
        client,
        "editMessageText",
        **target,
        text="<b>已确认</b>",
        parse_mode="HTML",
        reply_markup=markup,
    )
    assert body["description"] == (
        "Bad Request: message is not modified: specified new message content and reply markup "
        "are exactly the same as a current content and reply markup of the message"
    )
    # Editing the text without reply_markup takes the keyboard away, as on Telegram.
    assert "reply_markup" not in await ok(
        client, "editMessageText", **target, text="<b>已确认</b>", parse_mode="HTML"
    )
    with_markup = await ok(client, "editMessageReplyMarkup", **target, reply_markup=markup)
    assert with_markup["reply_markup"] == markup and with_markup["text"] == "已确认"
    assert (await fails(client, "editMessageReplyMarkup", **target, reply_markup=markup))[
        "description"
    ].startswith("Bad Request: message is not modified")
    assert "reply_markup" not in await ok(client, "editMessageReplyMarkup", **target)

    missing = {"chat_id": MOM, "message_id": 999}
    for method, extra in (("editMessageText", {"text": "x"}), ("editMessageReplyMarkup", {})):
        body = await fails(client, method, **missing, **extra)
        assert body["description"] == "Bad Request: message to edit not found"
    theirs = await sandbox.user_sends(MOM, MOM, "我的消息")
    body = await fails(
        client, "editMessageText", chat_id=MOM, message_id=theirs["message_id"], text="x"
    )
    assert body["description"] == "Bad Request: message can't be edited"

    assert await ok(client, "deleteMessage", **target) is True
    body = await fails(client, "deleteMessage", **target)
    assert body["description"] == "Bad Request: message to delete not found"
    assert [m["message_id"] for m in sandbox.messages(MOM)] == [theirs["message_id"]]
    kinds = [e["type"] for e in sandbox.events.after(0, {MOM})]
    assert kinds == ["message", "edit", "edit", "edit", "edit", "message", "delete"]


async def test_callback_queries(client: Client, sandbox: Sandbox) -> None:
    markup = {"inline_keyboard": [[{"text": "是", "callback_data": "yes"}]]}
    sent = await ok(client, "sendMessage", chat_id=GROUP, text="参加吗？", reply_markup=markup)
    query_id = await sandbox.user_presses(ANNA, GROUP, sent["message_id"], "yes")
    [update] = await ok(client, "getUpdates")
    query = update["callback_query"]
    assert query["id"] == query_id and query["data"] == "yes" and query["from"]["id"] == ANNA
    assert query["message"]["message_id"] == sent["message_id"] and query["chat_instance"]

    seq = sandbox.seq
    assert await ok(
        client, "answerCallbackQuery", callback_query_id=query_id, text="已记录", show_alert=True
    )
    [event] = sandbox.events.after(seq)
    assert event["type"] == "callback_answer" and event["user_id"] == ANNA
    assert (event["chat_id"], event["text"], event["show_alert"]) == (GROUP, "已记录", True)
    for stale in (query_id, "12345"):  # answered already; never existed
        body = await fails(client, "answerCallbackQuery", callback_query_id=stale)
        assert body["description"] == (
            "Bad Request: query is too old and response timeout expired or query ID is invalid"
        )
    with pytest.raises(ValueError, match="no button"):
        await sandbox.user_presses(ANNA, GROUP, sent["message_id"], "forged")


async def test_old_callback_query_when_limits_are_on(client: Client) -> None:
    clock = Clock()
    sandbox = make_sandbox(limits=Limits(enabled=True), clock=clock)
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as other:
        markup = {"inline_keyboard": [[{"text": "是", "callback_data": "yes"}]]}
        sent = await ok(other, "sendMessage", chat_id=MOM, text="?", reply_markup=markup)
        query_id = await sandbox.user_presses(MOM, MOM, sent["message_id"], "yes")
        clock.now += 16
        body = await fails(other, "answerCallbackQuery", callback_query_id=query_id)
        assert "query is too old" in body["description"]


async def test_chat_action(client: Client, sandbox: Sandbox) -> None:
    assert await ok(client, "sendChatAction", chat_id=MOM, action="typing") is True
    assert sandbox.events.after(0)[-1] == {
        "type": "chat_action",
        "chat_id": MOM,
        "action": "typing",
        "seq": sandbox.seq,
    }
    body = await fails(client, "sendChatAction", chat_id=MOM, action="dancing")
    assert body["description"] == "Bad Request: wrong parameter action in request"


# ---------------------------------------------------------------------------------------------
# Updates: polling and webhooks


async def test_get_updates_offset_and_limit(client: Client, sandbox: Sandbox) -> None:
    for text in ("一", "二", "三"):
        await sandbox.user_sends(MOM, MOM, text)
    updates = await ok(client, "getUpdates")
    assert [u["message"]["text"] for u in updates] == ["一", "二", "三"]
    first = updates[0]["update_id"]
    assert [u["message"]["text"] for u in await ok(client, "getUpdates", limit=1)] == ["一"]
    # An offset confirms everything before it: those updates are gone for good.
    assert len(await ok(client, "getUpdates", offset=first + 1)) == 2
    assert [u["update_id"] for u in await ok(client, "getUpdates")] == [first + 1, first + 2]
    assert [u["update_id"] for u in await ok(client, "getUpdates", offset=-1)] == [first + 2]
    assert await ok(client, "getUpdates", offset=first + 3) == []
    message = updates[1]["message"]
    assert message["from"] == {
        "id": MOM,
        "is_bot": False,
        "first_name": "张琪妈妈",
        "language_code": "zh-hans",
    }


async def test_long_polling_answers_when_an_update_arrives(
    client: Client, sandbox: Sandbox
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(ok(client, "getUpdates", timeout=5))
    await asyncio.sleep(0.05)
    assert not poll.done()
    await sandbox.user_sends(MOM, MOM, "/start")
    [update] = await poll
    assert time.monotonic() - started < 1
    assert update["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    started = time.monotonic()
    assert await ok(client, "getUpdates", offset=update["update_id"] + 1, timeout=0.2) == []
    assert time.monotonic() - started >= 0.2


async def test_allowed_updates_and_group_privacy(client: Client, sandbox: Sandbox) -> None:
    await ok(client, "getUpdates", allowed_updates=["callback_query"])
    await sandbox.user_sends(MOM, MOM, "not for the bot")
    assert await ok(client, "getUpdates") == []
    await ok(client, "getUpdates", allowed_updates=[])  # back to the default set
    for text in ("/help@kehou_test_bot", "大家好", "/help@other_bot", "/language"):
        await sandbox.user_sends(ANNA, GROUP, text)
    texts = [u["message"]["text"] for u in await ok(client, "getUpdates")]
    assert texts == ["/help@kehou_test_bot", "/language"]  # privacy mode
    assert len(sandbox.messages(GROUP)) == 4  # everyone in the group sees everything


async def test_get_updates_conflicts(client: Client, sandbox: Sandbox) -> None:
    older = asyncio.create_task(call(client, "getUpdates", timeout=5))
    await asyncio.sleep(0.05)
    assert await ok(client, "getUpdates") == []
    status, body = await older
    assert status == 409 and body["description"] == (
        "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running"
    )
    assert await ok(client, "setWebhook", url="http://127.0.0.1:9/hook") is True
    body = await fails(client, "getUpdates")
    assert body == {
        "ok": False,
        "error_code": 409,
        "description": "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first",
    }
    assert await ok(client, "deleteWebhook") is True
    assert await ok(client, "getUpdates") == []


async def test_webhook_delivery(client: Client, sandbox: Sandbox) -> None:
    received: list[tuple[str | None, JSON]] = []
    failures = [1]

    async def hook(request: web.Request) -> web.Response:
        if failures[0]:  # the first delivery fails: Telegram tries again
            failures[0] -= 1
            return web.Response(status=500)
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    async with TestServer(receiver, host="127.0.0.1") as hook_server:
        url = str(hook_server.make_url("/hook"))
        await sandbox.user_sends(MOM, MOM, "dropped")
        _, body = await call(
            client, "setWebhook", url=url, secret_token="s3cret_-", drop_pending_updates=True
        )
        assert body == {"ok": True, "result": True, "description": "Webhook was set"}
        for text in ("一", "二", "三"):
            await sandbox.user_sends(MOM, MOM, text)
        for _ in range(200):
            if len(received) == 3:
                break
            await asyncio.sleep(0.01)
        assert [secret for secret, _ in received] == ["s3cret_-"] * 3
        assert [update["message"]["text"] for _, update in received] == ["一", "二", "三"]
        info = await ok(client, "getWebhookInfo")
        assert info["url"] == url and info["pending_update_count"] == 0
        assert (
            info["last_error_message"]
            == "Wrong response from the webhook: 500 Internal Server Error"
        )
        _, body = await call(client, "deleteWebhook")
        assert body["description"] == "Webhook was deleted"
    info = await ok(client, "getWebhookInfo")
    assert info == {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
    assert sandbox.counters.updates["webhook_failures"] == 1


# ---------------------------------------------------------------------------------------------
# Files


async def test_upload_get_file_and_download(client: Client, sandbox: Sandbox) -> None:
    image = png(3, 2)
    form = aiohttp.FormData()
    form.add_field("chat_id", str(MOM))
    form.add_field("caption", "<b>今天</b>的活动", content_type="text/plain")
    form.add_field("parse_mode", "HTML")
    form.add_field("photo", image, filename="活动.png", content_type="image/png")
    response = await client.post(f"/bot{TOKEN}/sendPhoto", data=form)
    sent = (await response.json())["result"]
    [size] = sent["photo"]
    assert (size["width"], size["height"], size["file_size"]) == (3, 2, len(image))
    assert sent["caption"] == "今天的活动" and sent["caption_entities"] == [
        {"offset": 0, "length": 2, "type": "bold"}
    ]

    file = await ok(client, "getFile", file_id=size["file_id"])
    assert file["file_unique_id"] == size["file_unique_id"] and file["file_path"].startswith(
        "photos/"
    )
    download = await client.get(f"/file/bot{TOKEN}/{file['file_path']}")
    assert download.status == 200 and await download.read() == image
    assert (await client.get(f"/file/bot{TOKEN}/photos/nothing.jpg")).status == 404
    assert (await client.get(f"/file/bot1:wrong/{file['file_path']}")).status == 401

    again = await ok(client, "sendPhoto", chat_id=GROUP, photo=size["file_id"])
    assert again["photo"][0]["file_id"] == size["file_id"]

    form = aiohttp.FormData()
    form.add_field("chat_id", str(MOM))
    form.add_field("document", b'{"name": "\xe5\xbc\xa0"}', filename="kehou-mydata.json")
    response = await client.post(f"/bot{TOKEN}/sendDocument", data=form)
    document = (await response.json())["result"]["document"]
    assert (
        document["file_name"] == "kehou-mydata.json"
        and document["mime_type"] == "application/json"
    )
    page = sandbox.messages(MOM)[-1]
    assert page["document_name"] == "kehou-mydata.json"
    assert await (await client.get(page["document_url"])).read() == b'{"name": "\xe5\xbc\xa0"}'
    assert await (await client.get(sandbox.messages(MOM)[0]["photo_url"])).read() == image

    body = await fails(client, "sendPhoto", chat_id=MOM, photo=document["file_id"])
    assert body["description"] == "Bad Request: can't use file of type Document as Photo"
    body = await fails(client, "sendDocument", chat_id=MOM, document="no-such-file")
    assert body["description"] == "Bad Request: wrong file identifier/HTTP URL specified"
    form = aiohttp.FormData()
    form.add_field("chat_id", str(MOM))
    form.add_field("photo", b"not an image", filename="x.jpg")
    response = await client.post(f"/bot{TOKEN}/sendPhoto", data=form)
    assert (await response.json())["description"] == "Bad Request: IMAGE_PROCESS_FAILED"


async def test_send_photo_by_url(client: Client) -> None:
    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=png(), content_type="image/png")

    origin = web.Application()
    origin.router.add_get("/p.png", picture)
    async with TestServer(origin, host="127.0.0.1") as origin_server:
        sent = await ok(
            client, "sendPhoto", chat_id=MOM, photo=str(origin_server.make_url("/p.png"))
        )
        assert sent["photo"][0]["width"] == 2
        body = await fails(
            client, "sendPhoto", chat_id=MOM, photo=str(origin_server.make_url("/none"))
        )
        assert body["description"] == "Bad Request: failed to get HTTP URL content"


# ---------------------------------------------------------------------------------------------
# Commands


async def test_command_scopes(client: Client, sandbox: Sandbox) -> None:
    default = [
        {"command": "start", "description": "开始"},
        {"command": "help", "description": "帮助"},
    ]
    english = [{"command": "help", "description": "Help"}]
    mine = [{"command": "photos", "description": "照片"}]
    assert await ok(client, "setMyCommands", commands=default)
    assert await ok(client, "setMyCommands", commands=english, language_code="en")
    assert await ok(client, "setMyCommands", commands=mine, scope={"type": "chat", "chat_id": MOM})
    group = {"type": "all_group_chats"}
    assert await ok(client, "setMyCommands", commands=english, scope=group)
    member = {"type": "chat_member", "chat_id": GROUP, "user_id": ANNA}
    assert await ok(client, "setMyCommands", commands=mine, scope=member)

    assert await ok(client, "getMyCommands") == default
    assert await ok(client, "getMyCommands", language_code="en") == english
    assert await ok(client, "getMyCommands", scope={"type": "chat", "chat_id": MOM}) == mine
    assert (
        await ok(
            client, "getMyCommands", scope={"type": "chat", "chat_id": MOM}, language_code="en"
        )
        == []
    )
    assert await ok(client, "getMyCommands", scope=member) == mine
    assert sandbox.commands_for(MOM, MOM) == mine
    assert sandbox.commands_for(ANNA, ANNA) == english  # default scope, in her language
    assert sandbox.commands_for(GROUP, MOM) == english

    assert await ok(client, "deleteMyCommands", scope={"type": "chat", "chat_id": MOM})
    assert sandbox.commands_for(MOM, MOM) == default
    assert await ok(client, "getMyCommands", scope={"type": "chat", "chat_id": MOM}) == []
    body = await fails(
        client, "setMyCommands", commands=mine, scope={"type": "chat", "chat_id": 5}
    )
    assert body["description"] == "Bad Request: chat not found"
    body = await fails(
        client, "setMyCommands", commands=[{"command": "Bad Name", "description": "x"}]
    )
    assert body["error_code"] == 400


# ---------------------------------------------------------------------------------------------
# Limits


async def test_limits_per_chat() -> None:
    clock = Clock()
    sandbox = make_sandbox(limits=Limits(enabled=True), clock=clock)
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as client:
        sent = [
            await ok(client, "sendMessage", chat_id=MOM, text="x") for _ in range(3)
        ]  # a burst
        body = await fails(client, "sendMessage", chat_id=MOM, text="x")
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        # Edits count too; other chats and other methods are not affected.
        body = await fails(
            client, "editMessageText", chat_id=MOM, message_id=sent[0]["message_id"], text="y"
        )
        assert body["error_code"] == 429
        await ok(client, "sendMessage", chat_id=ANNA, text="another chat")
        await ok(client, "sendChatAction", chat_id=MOM, action="typing")
        clock.now += 1  # then one a second
        await ok(client, "sendMessage", chat_id=MOM, text="x")
        assert (await fails(client, "sendMessage", chat_id=MOM, text="x"))["error_code"] == 429
        assert sandbox.counters.rate_limited == 3
        assert sandbox.counters.chats[MOM].rate_limited == 3


async def test_limits_per_group() -> None:
    clock = Clock()
    limits = Limits(enabled=True, chat_per_second=100, chat_burst=100)
    sandbox = make_sandbox(limits=limits, clock=clock)
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as client:
        for n in range(20):
            await ok(client, "sendMessage", chat_id=GROUP, text=str(n))
            clock.now += 1
        body = await fails(client, "sendMessage", chat_id=GROUP, text="21st")
        # The first of the 20 was sent 20 s ago: it leaves the 60 s window in 40 s.
        assert body["parameters"] == {"retry_after": 40}
        assert body["description"] == "Too Many Requests: retry after 40"
        await ok(client, "sendMessage", chat_id=MOM, text="private chats are not limited so")
        clock.now += 40
        await ok(client, "sendMessage", chat_id=GROUP, text="21st")


async def test_limits_per_bot() -> None:
    clock = Clock()
    sandbox = make_sandbox(limits=Limits(enabled=True), clock=clock)
    for user_id in range(1000, 1031):
        sandbox.add_user(user_id, f"家长{user_id}")
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as client:
        for user_id in range(1000, 1030):
            await ok(client, "sendMessage", chat_id=user_id, text="通知")
        body = await fails(client, "sendMessage", chat_id=1030, text="通知")
        assert body["error_code"] == 429 and body["parameters"]["retry_after"] == 1
        clock.now += 0.1  # refills at 30 a second
        await ok(client, "sendMessage", chat_id=1030, text="通知")


async def test_limits_switched_at_run_time(client: Client, sandbox: Sandbox) -> None:
    for n in range(40):
        await ok(client, "sendMessage", chat_id=GROUP, text=str(n))
    assert sandbox.counters.rate_limited == 0
    response = await client.post("/sandbox/api/config", json={"limits": {"enabled": True}})
    assert (await response.json())["limits"]["enabled"] is True
    results = [await call(client, "sendMessage", chat_id=ANNA, text="x") for _ in range(5)]
    assert [status for status, _ in results] == [200, 200, 200, 429, 429]
    response = await client.post("/sandbox/api/config", json={"limits": {"enabled": "yes"}})
    assert response.status == 400


# ---------------------------------------------------------------------------------------------
# Faults


async def test_fault_delay(client: Client, sandbox: Sandbox) -> None:
    sandbox.faults.delay = 0.05
    started = time.monotonic()
    await ok(client, "getMe")
    assert time.monotonic() - started >= 0.05
    sandbox.faults.enabled = False  # the master switch keeps the settings
    await ok(client, "getMe")
    assert sandbox.counters.faults["delayed"] == 1


async def bad_gateway_pattern(seed: int) -> list[int]:
    sandbox = make_sandbox(faults=Faults(error_rate=0.5, seed=seed))
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as client:
        statuses = [
            (await call(client, "sendMessage", chat_id=MOM, text="x"))[0] for _ in range(20)
        ]
        status, body = await call(client, "getMe")
        while status != 502:
            status, body = await call(client, "getMe")
        assert body == {"ok": False, "error_code": 502, "description": "Bad Gateway"}
        # A call answered 502 was not carried out.
        assert len(sandbox.messages(MOM)) == statuses.count(200)
        assert sandbox.counters.faults["bad_gateway"] >= statuses.count(502) + 1
        return statuses


async def test_fault_bad_gateway_is_reproducible() -> None:
    first = await bad_gateway_pattern(seed=7)
    assert set(first) == {200, 502}
    assert await bad_gateway_pattern(seed=7) == first
    assert await bad_gateway_pattern(seed=8) != first


async def test_fault_timeout(client: Client, sandbox: Sandbox) -> None:
    sandbox.faults.timeout_rate = 1.0
    sandbox.faults.hang_seconds = 0.3
    sandbox.faults.methods = {"sendmessage"}
    seq = sandbox.seq
    with pytest.raises(TimeoutError):
        await client.post(
            f"/bot{TOKEN}/sendMessage",
            json={"chat_id": MOM, "text": "迟到"},
            timeout=aiohttp.ClientTimeout(total=0.05),
        )
    # The call was carried out all the same, only its answer was too late.
    late = await sandbox.wait_for_bot_message(MOM, after_seq=seq, timeout=1)
    assert late["text"] == "迟到"
    await ok(client, "getMe")  # other methods are not touched
    assert sandbox.counters.faults["timeout"] == 1


async def test_fault_blocked_user(client: Client, sandbox: Sandbox) -> None:
    sandbox.faults.blocked_users = {ANNA}
    body = await fails(client, "sendMessage", chat_id=ANNA, text="hi")
    assert body == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    await ok(client, "sendMessage", chat_id=GROUP, text="groups still work")
    assert sandbox.counters.faults["blocked"] == 1


async def test_page_api_migrates_a_group_once(client: Client, sandbox: Sandbox) -> None:
    answer = await client.post(f"/sandbox/api/chats/{GROUP}/migrate")
    new_id = (await answer.json())["migrate_to_chat_id"]
    assert sandbox.chats[new_id].type == "supergroup"
    again = await client.post(f"/sandbox/api/chats/{GROUP}/migrate")
    assert again.status == 400 and "not a basic group" in (await again.json())["error"]


async def test_group_migrated_to_supergroup(client: Client, sandbox: Sandbox) -> None:
    new_id = sandbox.migrate_group(GROUP)
    assert str(new_id).startswith("-100")
    body = await fails(client, "sendMessage", chat_id=GROUP, text="hi")
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": new_id},
    }
    sent = await ok(client, "sendMessage", chat_id=new_id, text="hi")
    assert sent["chat"]["type"] == "supergroup"
    updates = await ok(client, "getUpdates")
    assert [u["message"].get("migrate_to_chat_id") for u in updates] == [new_id, None]
    assert updates[1]["message"]["migrate_from_chat_id"] == GROUP
    # People now write in the supergroup.
    said = await sandbox.user_sends(MOM, GROUP, "/help")
    assert said["chat"]["id"] == new_id


# ---------------------------------------------------------------------------------------------
# Counters


async def test_counters(client: Client, sandbox: Sandbox) -> None:
    await ok(client, "getMe")
    await ok(client, "sendMessage", chat_id=MOM, text="一")
    await fails(client, "sendMessage", chat_id=MOM, text="")
    await call(client, "nope")
    await sandbox.user_sends(MOM, MOM, "二")
    counters = sandbox.counters
    assert counters.methods == {"getMe": 1, "sendMessage": 2, "nope": 1}
    assert counters.statuses == {200: 2, 400: 1, 404: 1}
    assert counters.chats[MOM].bot_messages == 1 and counters.chats[MOM].user_messages == 1
    assert counters.bytes_in > 0 and counters.bytes_out > 0
    exposed = await (await client.get("/sandbox/api/counters")).json()
    assert exposed["methods"] == {"getMe": 1, "sendMessage": 2, "nope": 1}
    assert exposed["requests"] == 4 and exposed["statuses"]["400"] == 1
    assert exposed["chats"][str(MOM)]["calls"] == 2
    assert exposed["updates"]["queued"] == 1
    assert sandbox.counters["rate_limited"] == 0


# ---------------------------------------------------------------------------------------------
# The page API


async def test_page_info_and_personas(client: Client, sandbox: Sandbox) -> None:
    sandbox.add_persona(
        "mom",
        kind="private",
        chat_id=MOM,
        user_id=MOM,
        label="张琪妈妈",
        description={"en": "Parent"},
    )
    sandbox.add_persona(
        "group", kind="group", chat_id=GROUP, user_id=ANNA, label="家长群", language="en"
    )
    info = await (await client.get("/sandbox/api/info")).json()
    assert info["bot"] == {"id": 123456789, "username": BOT, "first_name": "课后 Kehou"}
    assert info["limits"]["enabled"] is False and info["faults"]["blocked_users"] == []
    personas = (await (await client.get("/sandbox/api/personas")).json())["personas"]
    assert personas == [
        {
            "key": "mom",
            "kind": "private",
            "chat_id": MOM,
            "user_id": MOM,
            "label": "张琪妈妈",
            "description": {"en": "Parent"},
            "language": "zh_CN",
        },
        {
            "key": "group",
            "kind": "group",
            "chat_id": GROUP,
            "user_id": ANNA,
            "label": "家长群",
            "description": "",
            "language": "en",
        },
    ]
    response = await client.post(
        "/sandbox/api/config", json={"faults": {"delay": 0.01, "blocked_users": [ANNA]}}
    )
    assert (await response.json())["faults"]["blocked_users"] == [ANNA]
    assert sandbox.faults.delay == 0.01 and sandbox.faults.blocked_users == {ANNA}


async def test_page_sends_and_sees_the_bot(client: Client, sandbox: Sandbox) -> None:
    response = await client.post(
        f"/sandbox/api/chats/{MOM}/send", json={"user_id": MOM, "text": "/start"}
    )
    message = (await response.json())["message"]
    assert message["text"] == "/start" and message["outgoing"] is False
    assert message["html"] == '<span class="bot_command">/start</span>'
    [update] = await ok(client, "getUpdates")
    assert update["message"]["message_id"] == message["message_id"]

    after = (await (await client.get(f"/sandbox/api/chats/{MOM}/messages")).json())["seq"]
    poll = asyncio.create_task(
        client.get("/sandbox/api/events", params={"after": after, "chat_id": MOM, "timeout": 5})
    )
    await asyncio.sleep(0.05)
    assert not poll.done()
    markup = {"inline_keyboard": [[{"text": "我同意", "callback_data": "agree"}]]}
    sent = await ok(
        client,
        "sendMessage",
        chat_id=MOM,
        text="<i>隐私</i> & 条款",
        parse_mode="HTML",
        reply_markup=markup,
    )
    events = await (await poll).json()
    [event] = events["events"]
    assert event["type"] == "message" and event["seq"] == events["seq"] == after + 1
    shown = event["message"]
    assert shown["html"] == "<i>隐私</i> &amp; 条款" and shown["outgoing"] is True
    assert shown["reply_markup"] == markup and shown["reply_keyboard"] is None

    history = await (await client.get(f"/sandbox/api/chats/{MOM}/messages")).json()
    assert [m["message_id"] for m in history["messages"]] == [
        message["message_id"],
        sent["message_id"],
    ]
    assert history["seq"] == events["seq"]
    # Another chat's events do not end this chat's long poll; the timeout does.
    quiet = await client.get(
        "/sandbox/api/events", params={"after": history["seq"], "chat_id": ANNA, "timeout": 0.05}
    )
    assert (await quiet.json())["events"] == []

    response = await client.post(
        f"/sandbox/api/chats/{MOM}/press",
        json={"user_id": MOM, "message_id": sent["message_id"], "data": "agree"},
    )
    query_id = (await response.json())["callback_query_id"]
    [update] = await ok(client, "getUpdates", offset=update["update_id"] + 1)
    assert update["callback_query"]["id"] == query_id
    await ok(client, "answerCallbackQuery", callback_query_id=query_id, text="谢谢")
    events = await (
        await client.get("/sandbox/api/events", params={"after": history["seq"], "chat_id": MOM})
    ).json()
    assert [(e["type"], e["user_id"], e["text"]) for e in events["events"]] == [
        ("callback_answer", MOM, "谢谢")
    ]

    response = await client.post(
        f"/sandbox/api/chats/{MOM}/send", json={"user_id": ANNA, "text": "not my chat"}
    )
    assert response.status == 400 and "error" in await response.json()
    response = await client.post(
        f"/sandbox/api/chats/{MOM}/press", json={"user_id": MOM, "message_id": 99, "data": "x"}
    )
    assert response.status == 400
    assert (await client.get("/sandbox/api/chats/777/messages")).status == 404


async def test_page_itself(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    monkeypatch.setattr(server, "WEB_DIR", web_dir)
    response = await client.get("/")
    assert response.status == 404 and "index.html" in await response.text()
    template = '<title>课后</title><script type="application/json">__STRINGS__</script>'
    (web_dir / "index.html").write_text(template, encoding="utf-8")
    (web_dir / "app.js").write_text("console.log(1)", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    assert await (await client.get("/")).text() == (
        '<title>课后</title><script type="application/json">{}</script>'
    )
    assert await (await client.get("/static/app.js")).text() == "console.log(1)"
    for path in ("/static/%2E%2E/secret.txt", "/static/..%2Fsecret.txt", "/static/nothing.js"):
        assert (await client.get(URL(path, encoded=True))).status == 404


async def test_page_strings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(server, "WEB_DIR", tmp_path)
    (tmp_path / "index.html").write_text("<script>__STRINGS__</script>", encoding="utf-8")
    strings = {"en": {"title": "</script><b>"}, "zh_CN": {"title": "课后"}}
    app = create_app(make_sandbox(), page_strings=strings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        page = await (await client.get("/")).text()
        assert page.count("</script>") == 1 and "\\u003c/script\\u003e" in page
        assert await (await client.get("/sandbox/api/strings")).json() == strings
        assert (await (await client.get("/sandbox/api/info")).json())["strings"] == strings


# ---------------------------------------------------------------------------------------------
# python-telegram-bot against the sandbox


async def test_python_telegram_bot_maps_the_errors(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter warns about ints otherwise
    url = str(client.make_url("")).rstrip("/")
    sandbox.limits.enabled = True
    sandbox.faults.blocked_users = {ANNA}
    async with Bot(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot") as bot:
        for _ in range(3):
            await bot.send_message(MOM, "x")
        with pytest.raises(RetryAfter) as flood:
            await bot.send_message(MOM, "x")
        assert flood.value.retry_after == dt.timedelta(seconds=1)
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(ANNA, "x")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(5, "x")
        new_id = sandbox.migrate_group(GROUP)
        with pytest.raises(ChatMigrated) as migrated:
            await bot.send_message(GROUP, "x")
        assert migrated.value.new_chat_id == new_id
        sandbox.faults.error_rate = 1.0
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.get_me()


async def test_python_telegram_bot_application(client: Client, sandbox: Sandbox) -> None:
    """A real PTB Application polls the sandbox: /start, a button, an edited message."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("好的", callback_data="ok")]])
        await update.message.reply_text("hi", reply_markup=keyboard)

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("收到")
        await query.edit_message_text(f"pressed {query.data}")

    url = str(client.make_url("")).rstrip("/")
    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(pressed))
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=1)
    try:
        seq = sandbox.seq
        await sandbox.user_sends(MOM, MOM, "/start")
        hi = await sandbox.wait_for_bot_message(MOM, after_seq=seq, timeout=5)
        assert hi["text"] == "hi"
        assert hi["reply_markup"] == {
            "inline_keyboard": [[{"text": "好的", "callback_data": "ok"}]]
        }

        seq = sandbox.seq
        await sandbox.user_presses(MOM, MOM, hi["message_id"], "ok")
        edited = await sandbox.wait_for_bot_message(MOM, after_seq=seq, timeout=5)
        assert edited["message_id"] == hi["message_id"] and edited["text"] == "pressed ok"
        assert "reply_markup" not in edited and edited["edit_date"]
        answers = [e for e in sandbox.events.after(seq) if e["type"] == "callback_answer"]
        assert [(a["user_id"], a["text"]) for a in answers] == [(MOM, "收到")]
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
    assert sandbox.counters.methods["getMe"] == 1
    assert sandbox.updates.pending == deque()


async def test_a_persona_changed_while_the_page_is_open(client: Client, sandbox: Sandbox) -> None:
    sandbox.add_persona("mom", kind="private", chat_id=MOM, user_id=MOM, label="家长")
    after = sandbox.seq
    sandbox.update_persona("mom", description={"zh_CN": "张琪的家长", "en": "Parent of 张琪"})
    events = await (await client.get(f"/sandbox/api/events?after={after}&timeout=0")).json()
    assert [e["type"] for e in events["events"]] == ["persona"]
    personas = (await (await client.get("/sandbox/api/personas")).json())["personas"]
    assert personas[0]["description"] == {"zh_CN": "张琪的家长", "en": "Parent of 张琪"}
    with pytest.raises(ValueError, match="chat_id"):
        sandbox.update_persona("mom", chat_id=ANNA)


# ---------------------------------------------------------------------------------------------
# The demo's scene: every role has something to do, whatever the weekday and hour


SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    "local",
    [
        dt.datetime(2026, 12, 9, 14, 3, tzinfo=SHANGHAI),  # a Wednesday afternoon
        dt.datetime(2026, 12, 5, 10, 30, tzinfo=SHANGHAI),  # a Saturday morning
        dt.datetime(2026, 12, 13, 2, 23, tzinfo=SHANGHAI),  # a Sunday, small hours
        dt.datetime(2026, 12, 8, 22, 50, tzinfo=SHANGHAI),  # late evening
        dt.datetime(2026, 12, 8, 23, 10, tzinfo=SHANGHAI),  # the last session to start
        dt.datetime(2026, 12, 8, 23, 40, tzinfo=SHANGHAI),  # too late for a session to start
        dt.datetime(2027, 1, 1, 9, 0, tzinfo=SHANGHAI),  # New Year's Day, a holiday
    ],
    ids=["wednesday", "saturday", "sunday-night", "evening", "last", "late-evening", "holiday"],
)
async def test_the_demo_shows_every_role_at_work(database_url: str, local: dt.datetime) -> None:
    now = local.astimezone(dt.UTC)
    await demo.prepare(database_url, "http://127.0.0.1:9", now=now)
    teacher, mom, admin = (
        next(p for p in demo.PERSONAS if p.key == key).user_id
        for key in ("teacher", "parent-zhang", "admin")
    )
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            # The teacher's /roster: a session today, about to start, with their class in it.
            member = await members.find_member(session, teacher)
            assert member is not None
            roster = await leaves.roster(session, member, local.date())
            assert len(roster) == 1, roster
            course, children = roster[0]
            starts = dt.datetime.combine(local.date(), course.starts_at, SHANGHAI)
            ends = dt.datetime.combine(local.date(), course.ends_at, SHANGHAI)
            if local.time() <= dt.time(23, 10):
                assert dt.timedelta(minutes=10) <= starts - local <= dt.timedelta(minutes=30)
                assert ends - starts >= dt.timedelta(minutes=30)
            else:  # no room before midnight: today's session is under way
                assert starts <= local < ends
            # 张琪 (the guardians on the page) is in it; two classmates' guardians filed a leave
            # and an early pick-up this morning, so the roll and the alert can be tried.
            assert len(children) >= 20 and "张琪" in {c.name for c, _ in children}
            filed = [leave for _, leave in children if leave is not None]
            assert sorted(leave.pickup_at is not None for leave in filed) == [False, True]
            pickup = next(leave.pickup_at for leave in filed if leave.pickup_at is not None)
            assert course.starts_at < pickup < course.ends_at

            # A course the parents' child may join is full, with children waiting.
            parent = await members.find_member(session, mom)
            assert parent is not None
            child = (await guard.children(session, parent))[0]
            found = await catalogue.of(session, parent.school_id)
            offered = enrolment.offered(found, child.grade, local.date(), period=2)
            figures = await enrolment.counted(session, offered)
            full = [f for f in figures if f.seats_left == 0 and f.waitlisted]
            assert [f.course.code for f in full] == [demo.FULL_COURSE]
            assert full[0].waitlisted == demo.WAITING

            # The admin's /broadcasts: a notice to the class waits for tomorrow morning.
            manager = await members.find_member(session, admin)
            recent = await broadcasts.recent(session, manager)
            assert not isinstance(recent, broadcasts.Refused)
            waiting = [b for b in recent if b.status is BroadcastStatus.SCHEDULED]
            assert len(waiting) == 1 and waiting[0].scheduled_for is not None
            due = waiting[0].scheduled_for.astimezone(SHANGHAI)
            assert due.date() == local.date() + dt.timedelta(days=1)
            assert due.time() == demo.NOTICE_AT
            assert await broadcasts.due_scheduled(session, now) == []
    finally:
        await db.dispose()


async def test_the_demo_at_work_over_the_wire(demo_world: demo.DemoWorld) -> None:
    """Started now, whatever the hour: the teacher's /roster has today's session, about to
    start, and the admin's /broadcasts has the notice waiting for tomorrow."""
    teacher, admin = (
        Person(demo_world.sandbox, next(p for p in demo.PERSONAS if p.key == key).user_id)
        for key in ("teacher", "admin")
    )
    roster = await teacher.send("/roster", expecting="三年级课业辅导")
    local = dt.datetime.now(SHANGHAI)
    found = re.search(r"(\d\d):(\d\d)–(\d\d):(\d\d)", roster["text"])
    assert found, roster["text"]
    starts = local.replace(hour=int(found[1]), minute=int(found[2]), second=0, microsecond=0)
    ends = local.replace(hour=int(found[3]), minute=int(found[4]), second=0, microsecond=0)
    if starts > local:  # the usual case: it starts within half an hour
        assert starts - local <= dt.timedelta(minutes=30)
    else:  # late in the evening, today's session is under way
        assert local < ends
    listing = await admin.send("/broadcasts", expecting=demo.NOTICE_TEXT[:16])
    assert "8:00" in listing["text"]  # tomorrow morning


# ---------------------------------------------------------------------------------------------
# Albums: sendMediaGroup, and photos a person sends from the page


def ptb_bot(client: Client) -> Bot:
    url = str(client.make_url("")).rstrip("/")
    return Bot(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")


async def test_send_media_group_through_python_telegram_bot(
    client: Client, sandbox: Sandbox
) -> None:
    first, third = png(3, 2), png(4, 4)
    async with ptb_bot(client) as bot:
        known = (await bot.send_photo(ANNA, photo=png(5, 5))).photo[-1]
        before = len(sandbox.messages(MOM))
        album = await bot.send_media_group(
            MOM,
            [
                InputMediaPhoto(first, caption="<b>今天</b>的活动", parse_mode="HTML"),
                InputMediaPhoto(known.file_id),
                InputMediaPhoto(third, filename="第三张.png"),
            ],
        )
        assert len(album) == 3
        group_ids = {m.media_group_id for m in album}
        assert len(group_ids) == 1 and isinstance(album[0].media_group_id, str)
        assert album[0].caption == "今天的活动"
        assert album[0].caption_entities[0].type == "bold"
        assert album[1].caption is None and album[2].caption is None
        assert [(m.photo[-1].width, m.photo[-1].height) for m in album] == [(3, 2), (5, 5), (4, 4)]
        assert album[1].photo[-1].file_id == known.file_id
        # The chat holds the album in order, one message per photo.
        stored = sandbox.messages(MOM)[before:]
        assert [m["message_id"] for m in stored] == [m.message_id for m in album]
        assert {m["media_group_id"] for m in stored} == group_ids
        assert ["caption" in m for m in stored] == [True, False, False]
        # An uploaded photo of the album can be fetched back like any other file.
        file = await bot.get_file(album[2].photo[-1].file_id)
        assert bytes(await file.download_as_bytearray()) == third

        # A second album gets a new media_group_id.
        again = await bot.send_media_group(GROUP, [InputMediaPhoto(known.file_id)] * 2)
        assert again[0].media_group_id not in group_ids

        count = len(sandbox.messages(MOM))
        with pytest.raises(BadRequest, match="Media must include 2-10 items"):
            await bot.send_media_group(MOM, [InputMediaPhoto(first)])
        with pytest.raises(BadRequest, match="Too many messages to send as an album"):
            await bot.send_media_group(MOM, [InputMediaPhoto(known.file_id)] * 11)
        with pytest.raises(BadRequest, match="Document can't be mixed with other media types"):
            await bot.send_media_group(
                MOM, [InputMediaPhoto(first), InputMediaDocument(b"x", filename="a.txt")]
            )
        with pytest.raises(BadRequest, match="Message caption is too long"):
            await bot.send_media_group(
                MOM,
                [InputMediaPhoto(first), InputMediaPhoto(third, caption="<b>长</b>" * 400)],
                parse_mode="HTML",
            )
        assert len(sandbox.messages(MOM)) == count  # a refused album stores nothing


async def test_send_media_group_over_http(client: Client, sandbox: Sandbox) -> None:
    """Telegram's parameter forms: an attach:// upload in multipart, file_ids in JSON."""
    form = aiohttp.FormData()
    form.add_field("chat_id", str(MOM))
    media = [
        {"type": "photo", "media": "attach://one", "caption": "一"},
        {"type": "photo", "media": "attach://two", "caption": "<i>二</i>", "parse_mode": "HTML"},
    ]
    form.add_field("media", json.dumps(media))
    form.add_field("one", png(2, 2), filename="1.png", content_type="image/png")
    form.add_field("two", png(3, 3), filename="2.png", content_type="image/png")
    response = await client.post(f"/bot{TOKEN}/sendMediaGroup", data=form)
    first, second = (await response.json())["result"]
    assert (first["caption"], second["caption"]) == ("一", "二")  # each item its own caption
    assert second["caption_entities"] == [{"offset": 0, "length": 1, "type": "italic"}]
    file_id = first["photo"][0]["file_id"]

    async def refused(media: Any) -> str:
        return str(
            (await fails(client, "sendMediaGroup", chat_id=MOM, media=media))["description"]
        )

    assert await refused([]) == "Bad Request: there are no messages to send"
    missing = [{"type": "photo", "media": "attach://gone"}, {"type": "photo", "media": file_id}]
    assert await refused(missing) == "Bad Request: can't parse InputMedia: media not found"
    video = [{"type": "video", "media": file_id}] * 2
    assert (
        await refused(video) == 'Bad Request: can\'t parse InputMedia: type "video" is unsupported'
    )
    unknown = [{"type": "photo", "media": file_id}, {"type": "photo", "media": "nope"}]
    assert await refused(unknown) == "Bad Request: wrong file identifier/HTTP URL specified"
    body = await fails(
        client,
        "sendMediaGroup",
        chat_id=MOM,
        media=[{"type": "photo", "media": file_id}] * 2,
        reply_parameters={"message_id": 999},
    )
    assert body["description"] == "Bad Request: message to be replied not found"
    replied = await ok(
        client,
        "sendMediaGroup",
        chat_id=MOM,
        media=[{"type": "photo", "media": file_id}] * 2,
        reply_parameters={"message_id": first["message_id"]},
        disable_notification=True,
    )
    assert all(m["reply_to_message"]["message_id"] == first["message_id"] for m in replied)
    assert sandbox.counters.chats[MOM].bot_messages == 4


async def test_send_media_group_by_url(client: Client, sandbox: Sandbox) -> None:
    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=png(7, 3), content_type="image/png")

    origin = web.Application()
    origin.router.add_get("/p.png", picture)
    async with TestServer(origin, host="127.0.0.1") as origin_server:
        url = str(origin_server.make_url("/p.png"))
        album = await ok(
            client, "sendMediaGroup", chat_id=MOM, media=[{"type": "photo", "media": url}] * 2
        )
        assert [m["photo"][0]["width"] for m in album] == [7, 7]
        body = await fails(
            client,
            "sendMediaGroup",
            chat_id=MOM,
            media=[{"type": "photo", "media": url}, {"type": "photo", "media": url + "x"}],
        )
        assert body["description"] == "Bad Request: failed to get HTTP URL content"
    assert len(sandbox.messages(MOM)) == 2


async def test_an_album_counts_each_photo_against_the_limits() -> None:
    """An album goes out when its first photo may; every photo is charged, so what follows
    waits for all of them (one a second in a private chat), and a group's minute must have
    room for the whole album."""
    clock = Clock()
    sandbox = make_sandbox(limits=Limits(enabled=True), clock=clock)
    photo = sandbox.api.new_file("photo", png(), None, None)
    sandbox.keep_file(photo)
    album = [{"type": "photo", "media": photo.file_id}] * 5
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as client:
        assert len(await ok(client, "sendMediaGroup", chat_id=MOM, media=album)) == 5
        body = await fails(client, "sendMessage", chat_id=MOM, text="the text after it")
        # Burst of 3, five charged: two in debt, and one more token needed: 3 s.
        assert body["parameters"] == {"retry_after": 3}
        clock.now += 3
        await ok(client, "sendMessage", chat_id=MOM, text="the text after it")

        for n in range(16):
            await ok(client, "sendMessage", chat_id=GROUP, text=str(n))
            clock.now += 3
        body = await fails(client, "sendMediaGroup", chat_id=GROUP, media=album)
        assert body["error_code"] == 429
        # 16 sent in the last 48 s: room for 5 of 20 once the first has left the minute.
        assert body["parameters"] == {"retry_after": 12}
        assert len(sandbox.messages(GROUP)) == 16  # nothing of the refused album was stored
        clock.now += 11
        assert (await fails(client, "sendMediaGroup", chat_id=GROUP, media=album))[
            "error_code"
        ] == 429
        clock.now += 1
        assert len(await ok(client, "sendMediaGroup", chat_id=GROUP, media=album)) == 5


async def test_page_sends_photos_as_an_album_the_bot_receives(
    client: Client, sandbox: Sandbox
) -> None:
    """Several photos from the page are one album: one update per photo, one
    media_group_id, the caption on the first, the files retrievable by the bot."""
    pictures = [png(2, 2), png(3, 1), png(1, 3)]
    form = aiohttp.FormData()
    form.add_field("user_id", str(MOM))
    form.add_field("caption", "今天的手工课")
    for number, picture in enumerate(pictures, 1):
        form.add_field("photo", picture, filename=f"{number}.png", content_type="image/png")
    response = await client.post(f"/sandbox/api/chats/{MOM}/photos", data=form)
    assert response.status == 200
    shown = (await response.json())["messages"]
    assert [m["outgoing"] for m in shown] == [False] * 3 and all(m["photo_url"] for m in shown)

    url = str(client.make_url("")).rstrip("/")
    received: list[Update] = []
    done = asyncio.Event()

    async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        received.append(update)
        if len(received) == 3:
            done.set()

    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .build()
    )
    application.add_handler(MessageHandler(filters.PHOTO, photo))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await application.updater.stop()
            await application.stop()
        messages = [u.message for u in received if u.message is not None]
        assert len({m.media_group_id for m in messages}) == 1
        assert messages[0].media_group_id is not None
        assert [m.caption for m in messages] == ["今天的手工课", None, None]
        assert [m.from_user.id for m in messages if m.from_user] == [MOM] * 3
        for message, picture in zip(messages, pictures, strict=True):
            file = await application.bot.get_file(message.photo[-1].file_id)
            assert bytes(await file.download_as_bytearray()) == picture


async def test_page_sends_one_photo_and_refuses_what_telegram_would(
    client: Client, sandbox: Sandbox
) -> None:
    async def send(photos: list[tuple[bytes, str]], caption: str = "") -> tuple[int, JSON]:
        form = aiohttp.FormData()
        form.add_field("user_id", str(MOM))
        form.add_field("caption", caption)
        for data, name in photos:
            form.add_field("photo", io.BytesIO(data), filename=name, content_type="image/png")
        response = await client.post(f"/sandbox/api/chats/{MOM}/photos", data=form)
        return response.status, await response.json()

    status, body = await send([(png(), "one.png")], "/start@kehou_test_bot")
    [message] = body["messages"]
    assert status == 200 and "media_group_id" not in message
    assert message["caption_entities"][0]["type"] == "bot_command"
    [update] = await ok(client, "getUpdates")
    assert (
        update["message"]["photo"][0]["width"] == 2 and "media_group_id" not in update["message"]
    )

    too_many = [(png(), f"{n}.png") for n in range(11)]
    assert (await send(too_many))[0] == 400
    status, body = await send([(png(), "a.png"), (b"not a picture", "b.png")])
    assert status == 400 and "photo 2" in body["error"]
    status, body = await send([(b"\x89PNG" + b"\0" * (10 * 1024 * 1024), "huge.png")])
    assert status == 413 and "10 MB" in body["error"]
    status, _ = await send([(png(), "a.png")], "字" * 1025)
    assert status == 400
    assert len(sandbox.messages(MOM)) == 1  # nothing of the refused sends was stored
