"""Drive the real Kehou application without Telegram.

`RecordingRequest` stands in for the HTTP layer: it records every Bot API call and answers with
Telegram-shaped JSON. `FakeUser` sends messages and presses buttons the way a person would,
through `Application.process_update`, and reads back what the bot said.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.ext import Application
from telegram.request import BaseRequest, RequestData

BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "Kehou", "username": "kehou_test_bot"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None  # the Bot API error this call was answered with, if any

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    def buttons(self) -> list[dict[str, Any]]:
        markup = self.params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        if not markup or "inline_keyboard" not in markup:
            return []
        return [button for row in markup["inline_keyboard"] for button in row]


class RecordingRequest(BaseRequest):
    """A BaseRequest that never leaves the process."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._message_ids = itertools.count(1000)
        self._failures: list[tuple[str, int, str]] = []

    def fail_next(self, method: str, description: str, error_code: int = 400) -> None:
        """Answer the next `method` call with a Bot API error, e.g. ("editMessageText",
        "Bad Request: message to edit not found") for a message deleted meanwhile."""
        self._failures.append((method, error_code, description))

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data else {}
        files = (
            dict(request_data.multipart_data)
            if request_data and request_data.contains_files
            else {}
        )
        for failure in self._failures:
            if failure[0] == api_method:
                self._failures.remove(failure)
                _, code, description = failure
                self.calls.append(Call(api_method, params, files, error=description))
                payload = {"ok": False, "error_code": code, "description": description}
                return code, json.dumps(payload).encode()
        result = self._answer(api_method, params)
        self.calls.append(Call(api_method, params, files, result))
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def _answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method.startswith("send") and method != "sendChatAction":
            return self._message(params)
        if method.startswith("edit") and "chat_id" in params:
            return self._message(params, message_id=int(params["message_id"]))
        return True

    def _message(self, params: dict[str, Any], message_id: int | None = None) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message: dict[str, Any] = {
            "message_id": message_id or next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
        }
        if "text" in params:
            message["text"] = params["text"]
        if "document" in params:
            message["document"] = {"file_id": "doc1", "file_unique_id": "doc1"}
        if "caption" in params:
            message["caption"] = params["caption"]
        if "reply_markup" in params:
            markup = params["reply_markup"]
            message["reply_markup"] = json.loads(markup) if isinstance(markup, str) else markup
        return message

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def sent_to(self, chat_id: int) -> list[Call]:
        """Messages, documents and edits addressed to one chat, in order (failed ones left out:
        the person never saw them)."""
        return [
            c
            for c in self.calls
            if c.chat_id == chat_id
            and c.error is None
            and (c.method.startswith("send") or c.method.startswith("edit"))
            and c.method != "sendChatAction"
        ]


class FakeUser:
    """A person in a chat with the bot: types, presses buttons, reads answers."""

    _update_ids = itertools.count(1)
    _message_ids = itertools.count(1)

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        request: RecordingRequest,
        user_id: int,
        *,
        first_name: str = "Test",
        language_code: str | None = "zh-hans",
        chat: dict[str, Any] | None = None,
    ) -> None:
        self.application = application
        self.request = request
        self.user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language_code:
            self.user["language_code"] = language_code
        self.chat = chat or {"id": user_id, "type": "private", "first_name": first_name}
        self._seen = 0

    @property
    def id(self) -> int:
        return int(self.user["id"])

    async def send(self, text: str) -> list[Call]:
        """Type a message or a command; returns what the bot sent back."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat,
            "from": self.user,
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return await self._feed({"update_id": next(self._update_ids), "message": message})

    async def click(self, label: str) -> list[Call]:
        """Press the inline button with this label on the newest message that has one."""
        for call in reversed(self.request.sent_to(self.chat["id"])):
            for button in call.buttons():
                if button["text"] == label:
                    return await self.press(button["callback_data"], call)
        raise AssertionError(f"no button {label!r}; buttons seen: {self.all_buttons()}")

    async def press(self, data: str, on: Call | None = None) -> list[Call]:
        """Send a callback query with any data, as a forged or stale button would."""
        message = {
            "message_id": on.result["message_id"] if on and isinstance(on.result, dict) else 1,
            "date": int(time.time()),
            "chat": self.chat,
            "from": BOT_USER,
            "text": on.text if on else "",
        }
        query = {
            "id": str(next(self._update_ids)),
            "from": self.user,
            "chat_instance": "ci",
            "data": data,
            "message": message,
        }
        return await self._feed({"update_id": next(self._update_ids), "callback_query": query})

    def all_buttons(self) -> list[str]:
        return [b["text"] for c in self.request.sent_to(self.chat["id"]) for b in c.buttons()]

    async def _feed(self, payload: dict[str, Any]) -> list[Call]:
        before = len(self.request.calls)
        await self.application.process_update(Update.de_json(payload, self.application.bot))
        return [
            c
            for c in self.request.calls[before:]
            if c.error is None
            and (c.chat_id == self.chat["id"] or c.method == "answerCallbackQuery")
        ]

    @staticmethod
    def texts(calls: list[Call]) -> str:
        return "\n".join(c.text for c in calls if c.text)
