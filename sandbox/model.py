"""The sandbox's state: chats, messages, files, counters, the event log, request parameters."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

MAX_TEXT = 4096  # characters of a message, after entity parsing
MAX_CAPTION = 1024


class ApiError(Exception):
    """A Bot API error answer: {"ok": false, "error_code", "description", "parameters"}."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(reason: str, parameters: JSON | None = None) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}", parameters)


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    data: bytes
    filename: str | None = None
    content_type: str | None = None


class Params:
    """A call's parameters, from the query string, a JSON body, a form or multipart parts.

    Forms carry every value as a string (python-telegram-bot sends objects as JSON text), so
    values are converted on reading, the way the Bot API server does.
    """

    def __init__(self, values: JSON, files: dict[str, Upload] | None = None) -> None:
        self.values = values
        self.files = files or {}

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" else value

    def get_str(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    def get_int(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
        raise bad_request(f"invalid {name} specified")

    def get_float(self, name: str) -> float | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def get_json(self, name: str) -> Any:
        value = self.raw(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        return value


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "photo" or "document"
    data: bytes
    file_path: str
    mime_type: str
    file_name: str | None = None
    width: int = 0
    height: int = 0

    def file_info(self) -> JSON:
        """getFile's File object."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class KeyboardChange:
    """What a bot message does to the chat's reply keyboard."""

    rows: list[list[JSON]] | None = None  # show this keyboard
    one_time: bool = False
    remove: bool = False  # ReplyKeyboardRemove


def quoted(data: JSON) -> JSON:
    """A message as it appears inside a reply (without its own reply_to_message)."""
    return {key: value for key, value in data.items() if key != "reply_to_message"}


@dataclass
class StoredMessage:
    data: JSON  # the Telegram Message, updated in place by edits
    outgoing: bool  # sent by the bot


@dataclass
class Chat:
    id: int
    type: str  # "private", "group" or "supergroup"
    info: JSON  # the Chat object inside messages
    members: set[int] = field(default_factory=set)
    messages: OrderedDict[int, StoredMessage] = field(default_factory=OrderedDict)
    last_message_id: int = 0
    reply_keyboard: list[list[JSON]] | None = None
    one_time_keyboard: bool = False
    migrated_to: int | None = None

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id

    def store(self, message: StoredMessage, history_limit: int) -> None:
        self.messages[message.data["message_id"]] = message
        while len(self.messages) > history_limit:
            self.messages.popitem(last=False)


@dataclass
class ChatCounts:
    calls: int = 0  # Bot API calls naming this chat
    bot_messages: int = 0
    user_messages: int = 0
    rate_limited: int = 0


class Counters(Mapping[str, Any]):
    """Counts of everything the sandbox received and answered, for tests and benchmarks.

    The attributes are live counters; as a mapping it reads like /sandbox/api/counters.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.methods: Counter[str] = Counter()  # Bot API calls by method name as received
        self.statuses: Counter[int] = Counter()  # HTTP status of Bot API answers
        self.chats: defaultdict[int, ChatCounts] = defaultdict(ChatCounts)
        self.rate_limited = 0  # 429 answers
        self.faults: Counter[str] = Counter()  # delayed, bad_gateway, timeout, blocked, migrated
        self.bytes_in = 0  # request bodies of Bot API calls
        self.bytes_out = 0  # answer bodies of Bot API calls and file downloads
        self.events: Counter[str] = Counter()  # bot_messages, user_messages, edits, …
        self.updates: Counter[str] = Counter()  # queued, filtered, sent, confirmed, webhook_*

    def as_dict(self) -> JSON:
        return {
            "requests": sum(self.methods.values()),
            "methods": dict(self.methods),
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "rate_limited": self.rate_limited,
            "faults": dict(self.faults),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "events": dict(self.events),
            "updates": dict(self.updates),
            "chats": {str(chat_id): vars(c).copy() for chat_id, c in self.chats.items()},
        }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


class Signal:
    """Wakes every waiter at once; a fresh asyncio.Event per round keeps waiting O(1)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until the next fire() or for `seconds`, whichever is first."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


class EventLog:
    """What the page sees happen: a global sequence of events, also indexed per chat.

    Both lists are bounded; they are trimmed in halves, so appending stays O(1) amortised.
    """

    def __init__(self, limit: int = 20_000, chat_limit: int = 2_000) -> None:
        self.seq = 0
        self.signal = Signal()
        self._limit = limit
        self._chat_limit = chat_limit
        self._events: list[JSON] = []
        self._by_chat: dict[int, list[JSON]] = {}

    def add(self, event: JSON) -> JSON:
        self.seq += 1
        event["seq"] = self.seq
        self._events.append(event)
        if len(self._events) > 2 * self._limit:
            del self._events[: self._limit]
        chat_events = self._by_chat.setdefault(event["chat_id"], [])
        chat_events.append(event)
        if len(chat_events) > 2 * self._chat_limit:
            del chat_events[: self._chat_limit]
        self.signal.fire()
        return event

    def after(self, seq: int, chat_ids: set[int] | None = None) -> list[JSON]:
        """Events with a sequence number above seq, oldest first."""
        if chat_ids is None:
            return _after(self._events, seq)
        found: list[JSON] = []
        for chat_id in chat_ids:
            found.extend(_after(self._by_chat.get(chat_id, []), seq))
        if len(chat_ids) > 1:
            found.sort(key=lambda e: e["seq"])
        return found


def _after(events: list[JSON], seq: int) -> list[JSON]:
    if not events or events[-1]["seq"] <= seq:
        return []
    return events[bisect.bisect_right(events, seq, key=lambda e: e["seq"]) :]
