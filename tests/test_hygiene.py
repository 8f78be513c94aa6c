"""At DEBUG the end-to-end flows (joining, /mydata, /forget) log no token, secret, invite code
or child's name."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot import logs
from bot.services import invites
from sandbox import demo
from storage.db import Database
from storage.models import Student
from tests.e2e import Person, running_demo

WEBHOOK_SECRET = "hygiene-webhook-secret_42"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    for name in logs.LIBRARY_LEVELS:
        logging.getLogger(name).setLevel(logging.NOTSET)


async def test_debug_log_of_the_flows_holds_no_personal_data(
    database_url: str, debug_log: io.StringIO
) -> None:
    async with running_demo(database_url) as world:
        token = world.settings.require_token()
        logs.configure_logging("DEBUG", [token, WEBHOOK_SECRET], stream=debug_log)
        code = world.new_parent_code
        parent = Person(world.sandbox, demo.NEW_PARENT_ID)
        await parent.send("/start", expecting="邀请码")
        await parent.send(invites.pretty(code), expecting="尹铭")
        await parent.press("同意", expecting="照片")
        await parent.press("可以出现孩子的照片", expecting="绑定成功")
        await parent.send("/mydata", expecting="尹铭")
        await parent.send("/forget", expecting="删除")
        await parent.press("是的，删除我的数据", expecting="再见")
        db = Database(database_url)
        try:
            async with db.transaction() as session:
                names = list(await session.scalars(select(Student.name)))
        finally:
            await db.dispose()
    text = debug_log.getvalue()
    assert logging.getLogger().level == logging.DEBUG and "telegram.ext" in text
    assert token not in text and token.split(":", 1)[1] not in text
    assert WEBHOOK_SECRET not in text
    assert code not in text and invites.pretty(code) not in text
    leaked = [name for name in names if name in text]
    assert leaked == []
