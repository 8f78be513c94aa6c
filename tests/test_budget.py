"""How sends are budgeted: replies per chat only, bulk within the bot's rate, 429 for everyone.

Telegram's Bot API maintainers: there is no bot-wide limit on messages sent in answer to users,
only the per-chat one and the guidance for bulk notifications; `answerCallbackQuery` is not
limited (tdlib/td issue 3034, tdlib/telegram-bot-api issue 648). Handler-depth tests drive the
real application; the buckets are made slow enough (one message an hour) that "held" and
"went out at once" cannot be confused by a busy machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiolimiter import AsyncLimiter
from telegram.request import RequestData

from bot.app import build_application
from bot.config import Settings
from bot.context import KehouApplication
from bot.delivery import DeliveryWorker
from bot.i18n import I18n
from bot.services import outbox
from bot.services.outbox import NewMessage
from sandbox.server import Limits, create_app
from storage.db import Database
from tests.factories import SchoolData
from tests.harness import Call, FakeUser, RecordingRequest
from tests.test_sandbox import Clock, fails, make_sandbox, ok

HOUR = 3600


class FloodedRequest(RecordingRequest):
    """Answers 429 (retry after an hour) to the first message sent into `flooded`."""

    def __init__(self) -> None:
        super().__init__()
        self.flooded: int | None = None

    async def do_request(
        self, url: str, method: str, request_data: RequestData | None = None, **kwargs: Any
    ) -> tuple[int, bytes]:
        params = request_data.parameters if request_data else {}
        if self.flooded is not None and str(params.get("chat_id")) == str(self.flooded):
            self.flooded = None
            self.calls.append(Call(url.rsplit("/", 1)[-1], dict(params), result="429"))
            body = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {HOUR}",
                "parameters": {"retry_after": HOUR},
            }
            return 429, json.dumps(body).encode()
        return await super().do_request(url, method, request_data, **kwargs)


@pytest.fixture
def flooded_request() -> FloodedRequest:
    return FloodedRequest()


@pytest.fixture
async def bot_app(
    settings: Settings, db: Database, flooded_request: FloodedRequest
) -> AsyncIterator[KehouApplication]:
    """The real application, and a delivery worker on its bot (not started)."""
    application = build_application(settings, request=flooded_request, db=db)
    await application.initialize()
    yield application
    worker = application.runtime.worker
    if worker is not None:
        await worker.stop()
    await application.shutdown()


def person(app: KehouApplication, request: RecordingRequest, user_id: int) -> FakeUser:
    return FakeUser(app, request, user_id)


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:  # noqa: ASYNC109
    """Wait for something the bot does in the background (never a fixed sleep)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def held(task: asyncio.Task[Any]) -> bool:
    """The task is still waiting after a moment (and is then cancelled)."""
    done, _ = await asyncio.wait({task}, timeout=0.5)
    task.cancel()
    return not done


async def start_broadcast(
    app: KehouApplication, db: Database, school: SchoolData, recipients: int
) -> DeliveryWorker:
    """A broadcast draining through the worker, with the bulk budget used up for an hour."""
    budget = app.runtime.budget
    budget.overall = AsyncLimiter(1, HOUR)  # one bulk message an hour: the rest wait
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session,
            school.school_id,
            [NewMessage(900_000 + n, "broadcast", text="明天停课") for n in range(recipients)],
        )
    worker = DeliveryWorker(db, app.bot, I18n(ZoneInfo("Asia/Shanghai")), budget)
    app.runtime.worker = worker
    await worker.start()
    return worker


def broadcast_sent(request: RecordingRequest) -> int:
    return sum(1 for c in request.of("sendMessage") if (c.chat_id or 0) >= 900_000)


async def test_a_reply_goes_out_at_once_while_a_broadcast_holds_the_bulk_budget(
    bot_app: KehouApplication, db: Database, school: SchoolData, flooded_request: FloodedRequest
) -> None:
    await start_broadcast(bot_app, db, school, recipients=20)
    await until(lambda: broadcast_sent(flooded_request) == 1)  # then the bulk budget is empty

    parents = [person(bot_app, flooded_request, 4000 + n) for n in range(5)]
    for parent in parents:
        replies = await asyncio.wait_for(parent.send("/start"), 5)
        assert [c.method for c in replies] == ["sendMessage"]
    assert broadcast_sent(flooded_request) == 1  # the broadcast still waits for its budget


async def test_replies_into_one_chat_are_paced_per_chat(
    bot_app: KehouApplication, flooded_request: FloodedRequest
) -> None:
    budget = bot_app.runtime.budget
    budget.chat_per_second = budget.chat_burst / HOUR  # a burst, then the chat waits an hour
    eager = person(bot_app, flooded_request, 4100)
    for _ in range(budget.chat_burst):
        assert await asyncio.wait_for(eager.send("/start"), 5)
    again = asyncio.create_task(eager.send("/start"))
    assert await held(again)
    other = person(bot_app, flooded_request, 4101)  # another chat is not held back
    assert await asyncio.wait_for(other.send("/start"), 5)


async def test_a_429_on_a_reply_pauses_replies_and_bulk_but_not_button_answers(
    bot_app: KehouApplication,
    db: Database,
    school: SchoolData,
    flooded_request: FloodedRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    worker = await start_broadcast(bot_app, db, school, recipients=5)
    bot_app.runtime.budget.overall = AsyncLimiter(100, 1)  # bulk may go, until the 429
    flooded_request.flooded = 4200
    first = person(bot_app, flooded_request, 4200)
    answered = asyncio.create_task(first.send("/start"))
    await until(lambda: flooded_request.flooded is None)  # Telegram said: wait an hour
    sent_before = broadcast_sent(flooded_request)

    async with db.transaction() as session:
        await outbox.enqueue(session, school.school_id, NewMessage(990_000, "x", text="bulk"))
    worker.wake()

    second = person(bot_app, flooded_request, 4201)
    reply = asyncio.create_task(second.send("/start"))
    presser = person(bot_app, flooded_request, 4202)
    before = len(flooded_request.of("answerCallbackQuery"))
    press = asyncio.create_task(presser.press("cs:y:1:1"))
    await until(lambda: len(flooded_request.of("answerCallbackQuery")) > before)

    assert await held(reply)  # another person's reply waits for the pause
    assert await held(press)  # the press's result too, though its button was answered
    assert await held(answered)  # the reply that got the 429 is retried after the pause
    assert broadcast_sent(flooded_request) == sent_before  # and no bulk message went out
    assert flooded_request.sent_to(4201) == []


# ---------------------------------------------------------------------------------------------
# The sandbox's model of the same limits


async def test_the_sandbox_charges_answers_to_their_chat_and_bulk_to_the_bot() -> None:
    clock = Clock()
    sandbox = make_sandbox(limits=Limits(enabled=True), clock=clock)
    people = range(3000, 3060)
    for user_id in people:
        sandbox.add_user(user_id, f"家长{user_id}")
    async with TestClient(TestServer(create_app(sandbox), host="127.0.0.1")) as client:
        # Sixty people press at once: each answer goes out, beyond the bot's 30 a second.
        for user_id in people:
            await sandbox.user_sends(user_id, user_id, "/start")
        for user_id in people:
            await ok(client, "sendMessage", chat_id=user_id, text="请输入邀请码")
        # The answers took nothing from the bulk budget, and bulk is still held to it.
        bulk = [user_id + 100 for user_id in people[:31]]
        for user_id in bulk:
            sandbox.add_user(user_id, f"家长{user_id}")
        for user_id in bulk[:30]:
            await ok(client, "sendMessage", chat_id=user_id, text="通知")
        body = await fails(client, "sendMessage", chat_id=bulk[30], text="通知")
        assert body["error_code"] == 429
        # A person's action covers a few answers, for a while, and never the per-chat limit.
        mom = people[0]
        await ok(client, "sendMessage", chat_id=mom, text="二")
        await ok(client, "sendMessage", chat_id=mom, text="三")
        assert (await fails(client, "sendMessage", chat_id=mom, text="四"))["error_code"] == 429
        clock.now += 61  # the window has passed: what the bot sends now is bulk again
        for user_id in people[1:31]:
            await ok(client, "sendMessage", chat_id=user_id, text="通知")
        body = await fails(client, "sendMessage", chat_id=people[31], text="通知")
        assert body["error_code"] == 429
