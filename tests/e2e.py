"""End to end: the real bot polling the sandbox over HTTP, and people typing and pressing in it.

`demo_world` (a fixture in conftest.py, built on `running_demo`) loads the demo school, starts the
sandbox on a free port and the bot against it. `Person` is one of the people in a chat: it
types and presses through the sandbox as the web page does, and waits for the bot's answer.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from sandbox import demo
from sandbox.core import Sandbox

JSON = dict[str, Any]
TIMEOUT = 15.0  # seconds; a shared 2-core machine can be slow, a hung bot is still caught


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def running_demo(database_url: str) -> AsyncIterator[demo.DemoWorld]:
    """The demo school in `database_url`, the sandbox on a free port and the bot polling it.

    The page is at ``world.settings.api_base_url``.
    """
    port = free_port()
    world = await demo.prepare(database_url, f"http://127.0.0.1:{port}")
    async with demo.running(world, "127.0.0.1", port):
        yield world


class Person:
    """Someone in one chat of the sandbox (their private chat unless `chat_id` is given)."""

    def __init__(self, sandbox: Sandbox, user_id: int, chat_id: int | None = None) -> None:
        self.sandbox = sandbox
        self.user_id = user_id
        self.chat_id = user_id if chat_id is None else chat_id

    async def send(self, text: str, *, expecting: str) -> JSON:
        """Type `text`; return the bot's first message or edit since that contains `expecting`."""
        after = self.sandbox.seq
        await self.sandbox.user_sends(self.user_id, self.chat_id, text)
        return await self.answer(after, expecting)

    async def press(self, label: str, *, expecting: str, partial: bool = False) -> JSON:
        """Press the newest inline button labelled `label` (or containing it, if `partial`);
        return the answer as in `send`."""
        message, data = self.button(label, partial=partial)
        after = self.sandbox.seq
        await self.sandbox.user_presses(self.user_id, self.chat_id, message["message_id"], data)
        return await self.answer(after, expecting)

    async def answer(self, after: int, expecting: str) -> JSON:
        return await self.sandbox.wait_for_bot_message(
            self.chat_id,
            after_seq=after,
            timeout=TIMEOUT,
            predicate=lambda m: expecting in (m.get("text") or m.get("caption") or ""),
        )

    def button(self, label: str, *, partial: bool = False) -> tuple[JSON, str]:
        """The newest message with an inline button labelled `label`, and that button's data."""
        for message in reversed(self.sandbox.messages(self.chat_id)):
            markup = message.get("reply_markup") or {}
            for row in markup.get("inline_keyboard", []):
                for button in row:
                    text = button.get("text", "")
                    matches = label in text if partial else text == label
                    if matches and "callback_data" in button:
                        return message, button["callback_data"]
        raise AssertionError(f"no button {label!r} in chat {self.chat_id}")

    def transcript(self) -> str:
        """The whole chat as text, for assertion messages."""
        return "\n".join(
            ("bot: " if m["outgoing"] else "me: ") + (m.get("text") or m.get("caption") or "")
            for m in self.sandbox.messages(self.chat_id)
        )
