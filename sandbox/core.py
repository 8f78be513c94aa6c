"""The sandbox: one bot, its users, chats and files, all in memory.

`Sandbox` is what tests and the demo hold. The people's side is its methods (`user_sends`,
`user_presses`, …); the bot's side is the Bot API in `sandbox.botapi`, served over HTTP by
`sandbox.server`.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox import media
from sandbox.botapi import MAX_ALBUM, BotApi, file_content
from sandbox.entities import command_entities, to_html
from sandbox.limits import FaultPlan, Faults, Limits, RateLimiter, plan_faults
from sandbox.model import (
    JSON,
    MAX_CAPTION,
    MAX_TEXT,
    ApiError,
    Chat,
    Counters,
    EventLog,
    KeyboardChange,
    Signal,
    StoredFile,
    StoredMessage,
    quoted,
)
from sandbox.updates import UpdateQueue, Webhook

FILE_URL = "/sandbox/files/"


class SandboxError(ValueError):
    """Something a person cannot do (the page API answers it with 400)."""


@dataclass
class PendingCallback:
    user_id: int
    chat_id: int
    message_id: int
    created: float


class Sandbox:
    """All state of the sandbox, in memory. See the module and `sandbox.server`."""

    def __init__(
        self,
        token: str,
        *,
        bot_username: str = "kehou_demo_bot",
        bot_name: str = "课后 Kehou",
        limits: Limits | None = None,
        faults: Faults | None = None,
        group_privacy: bool = True,
        history_limit: int = 5_000,
        webhook_backoff: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not re.fullmatch(r"\d{1,20}:[A-Za-z0-9_-]+", token):
            raise ValueError("a bot token looks like 123456:ABC-def")
        self.token = token
        self.bot_user: JSON = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        self.limits = limits or Limits()
        self.faults = faults or Faults()  # also seeds self.random
        self.clock = clock
        # In groups the bot only gets commands, replies to it and service messages, as with
        # Telegram's default privacy mode.
        self.group_privacy = group_privacy
        self.history_limit = history_limit
        self.counters = Counters()
        self.users: dict[int, JSON] = {}
        self.chats: dict[int, Chat] = {}
        self.personas: list[JSON] = []
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.commands: dict[tuple[str, int, int, str], list[JSON]] = {}
        self.callbacks: OrderedDict[str, PendingCallback] = OrderedDict()
        self.events = EventLog()
        self.updates = UpdateQueue(self.counters)
        self.webhook = Webhook(self.updates, self.counters, backoff=webhook_backoff)
        self.rate = RateLimiter(clock)
        self.closing = False
        self._stop = Signal()
        self._last_query_id = 4_000_000_000_000_000_000
        self._last_file = 0
        self._last_media_group = 13_800_000_000_000_000
        self.api = BotApi(self)

    # -----------------------------------------------------------------------------------
    # Setting up people, chats and personas

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """New fault settings start a new run of random numbers from their seed."""
        self._faults = faults
        self.random = random.Random(faults.seed)

    @property
    def bot_id(self) -> int:
        return int(self.bot_user["id"])

    @property
    def bot_username(self) -> str:
        return str(self.bot_user["username"])

    @property
    def seq(self) -> int:
        """The sandbox-wide event counter now: wait for what happens after it."""
        return self.events.seq

    def add_user(
        self,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str = "zh-hans",
    ) -> None:
        """A person, and their private chat with the bot (chat id == user id)."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: JSON = {"id": user_id, "first_name": first_name}
        if last_name:
            user["last_name"] = chat["last_name"] = last_name
        if username:
            user["username"] = chat["username"] = username
        user["language_code"] = language_code
        chat["type"] = "private"
        self.users[user_id] = user
        self.chats[user_id] = Chat(user_id, "private", chat, members={user_id})

    def add_group(self, chat_id: int, title: str, member_ids: list[int]) -> None:
        """A group chat with these people and the bot in it."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        unknown = [m for m in member_ids if m not in self.users]
        if unknown:
            raise ValueError(f"add these users first: {unknown}")
        info = {"id": chat_id, "title": title, "type": "group"}
        self.chats[chat_id] = Chat(chat_id, "group", info, members=set(member_ids))

    def add_persona(
        self,
        key: str,
        *,
        kind: str,
        chat_id: int,
        user_id: int,
        label: str,
        description: str | Mapping[str, str] = "",
        language: str = "zh_CN",
    ) -> None:
        """An entry of the page's persona picker. `description` may be one text per locale."""
        if kind not in ("private", "group"):
            raise ValueError("kind is 'private' or 'group'")
        chat = self.chats.get(chat_id)
        if chat is None or user_id not in chat.members:
            raise ValueError(f"user {user_id} is not in chat {chat_id}")
        self.personas = [p for p in self.personas if p["key"] != key]
        self.personas.append(
            {
                "key": key,
                "kind": kind,
                "chat_id": chat_id,
                "user_id": user_id,
                "label": label,
                "description": description if isinstance(description, str) else dict(description),
                "language": language,
            }
        )

    def update_persona(self, key: str, **changes: Any) -> None:
        """Change a persona's entry (its label or description, say) while the page is open:
        the page reloads the persona list when it sees the "persona" event."""
        persona = next(p for p in self.personas if p["key"] == key)
        for field in changes:
            if field not in ("label", "description", "language"):
                raise ValueError(f"a persona's {field} cannot be changed")
        persona.update(
            {k: v if isinstance(v, str) else dict(v) for k, v in changes.items()},
        )
        self.events.add({"type": "persona", "chat_id": persona["chat_id"], "key": key})

    def migrate_group(self, old_id: int) -> int:
        """Upgrade a group to a supergroup with a new id, as Telegram does; returns the new id.

        The bot gets the two service messages; sending to the old id is refused from now on
        with `migrate_to_chat_id`. People (and personas) move to the new chat.
        """
        old = self.chats.get(old_id)
        if old is None or old.type != "group" or old.migrated_to is not None:
            raise ValueError(f"{old_id} is not a basic group")
        new_id = -(10**12 + abs(old_id))
        while new_id in self.chats:
            new_id -= 1
        info = {"id": new_id, "title": old.info["title"], "type": "supergroup"}
        new = Chat(new_id, "supergroup", info, members=set(old.members))
        self.chats[new_id] = new
        old.migrated_to = new_id
        actor = self.users[min(old.members)] if old.members else self.bot_user
        for chat, content in (
            (old, {"migrate_to_chat_id": new_id}),
            (new, {"migrate_from_chat_id": old_id}),
        ):
            stored = self.add_message(chat, content, sender=actor, outgoing=False)
            self.updates.push("message", stored.data)
        for persona in self.personas:
            if persona["chat_id"] == old_id:
                persona["chat_id"] = new_id
        return new_id

    # -----------------------------------------------------------------------------------
    # What people do

    async def user_sends(
        self, user_id: int, chat_id: int, text: str, *, reply_to: int | None = None
    ) -> JSON:
        """The person types text in the chat; the bot gets the message as an update.

        Commands, links and mentions get their entities as a Telegram client would mark them.
        Returns the stored message as the page sees it.
        """
        chat = self._user_chat(user_id, chat_id)
        text = text.strip()
        if not text:
            raise SandboxError("the message is empty")
        if len(text) > MAX_TEXT:
            raise SandboxError("the message is too long")
        content: JSON = {"text": text}
        entities = command_entities(text)
        if entities:
            content["entities"] = entities
        reply = None
        if reply_to is not None:
            replied = chat.messages.get(reply_to)
            if replied is None:
                raise SandboxError(f"no message {reply_to} in chat {chat.id}")
            reply = quoted(replied.data)
        if chat.one_time_keyboard:
            chat.reply_keyboard, chat.one_time_keyboard = None, False
        stored = self.add_message(chat, content, sender=self.users[user_id], reply_to=reply)
        if self._bot_sees(chat, stored.data):
            self.rate.user_acted(self.limits, chat.id)
            self.updates.push("message", stored.data)
        return self.render(chat, stored)

    async def user_sends_photos(
        self,
        user_id: int,
        chat_id: int,
        photos: list[tuple[bytes, str | None]],
        caption: str = "",
    ) -> list[JSON]:
        """The person sends pictures (data, file name), with an optional caption.

        One picture is one message with `photo`; several are an album, as Telegram clients
        send one: a message per picture sharing a `media_group_id`, the caption on the first,
        and the bot gets one update per message. Returns the stored messages as the page sees
        them.
        """
        chat = self._user_chat(user_id, chat_id)
        if not photos:
            raise SandboxError("no photo to send")
        if len(photos) > MAX_ALBUM:
            raise SandboxError(f"at most {MAX_ALBUM} photos at once")
        caption = caption.strip()
        if len(caption) > MAX_CAPTION:
            raise SandboxError("the caption is too long")
        files = []
        for number, (data, name) in enumerate(photos, 1):
            if len(data) > media.MAX_PHOTO_BYTES:
                raise SandboxError(f"photo {number} is larger than 10 MB")
            try:
                files.append(self.api.new_file("photo", data, name, None))
            except ApiError:
                raise SandboxError(
                    f"photo {number} is not a picture (PNG, JPEG, GIF or WebP)"
                ) from None
        group_id = self.new_media_group_id() if len(files) > 1 else None
        if chat.one_time_keyboard:
            chat.reply_keyboard, chat.one_time_keyboard = None, False
        sent = []
        for index, stored_file in enumerate(files):
            self.keep_file(stored_file)
            content = file_content(stored_file)
            if group_id is not None:
                content["media_group_id"] = group_id
            if index == 0 and caption:
                content["caption"] = caption
                entities = command_entities(caption)
                if entities:
                    content["caption_entities"] = entities
            stored = self.add_message(chat, content, sender=self.users[user_id])
            if self._bot_sees(chat, stored.data):
                self.updates.push("message", stored.data)
            sent.append(self.render(chat, stored))
        self.rate.user_acted(self.limits, chat.id)
        return sent

    async def user_sends_document(
        self, user_id: int, chat_id: int, data: bytes, name: str, caption: str = ""
    ) -> JSON:
        """The person sends a file (a spreadsheet, say) with an optional caption."""
        chat = self._user_chat(user_id, chat_id)
        if len(caption.strip()) > MAX_CAPTION:
            raise SandboxError("the caption is too long")
        try:
            stored_file = self.api.new_file("document", data, name, None)
        except ApiError as exc:
            raise SandboxError(f"the file cannot be sent: {exc}") from None
        self.keep_file(stored_file)
        content = file_content(stored_file)
        if caption.strip():
            content["caption"] = caption.strip()
            entities = command_entities(content["caption"])
            if entities:
                content["caption_entities"] = entities
        stored = self.add_message(chat, content, sender=self.users[user_id])
        if self._bot_sees(chat, stored.data):
            self.updates.push("message", stored.data)
        self.rate.user_acted(self.limits, chat.id)
        return self.render(chat, stored)

    def new_media_group_id(self) -> str:
        self._last_media_group += 1
        return str(self._last_media_group)

    async def user_presses(self, user_id: int, chat_id: int, message_id: int, data: str) -> str:
        """The person presses the inline button with this callback data; returns the query id."""
        chat = self._user_chat(user_id, chat_id)
        stored = chat.messages.get(message_id)
        if stored is None:
            raise SandboxError(f"no message {message_id} in chat {chat.id}")
        rows = (stored.data.get("reply_markup") or {}).get("inline_keyboard", [])
        if not any(button.get("callback_data") == data for row in rows for button in row):
            raise SandboxError("the message has no button with this callback data")
        self._last_query_id += 1
        query_id = str(self._last_query_id)
        self.callbacks[query_id] = PendingCallback(user_id, chat.id, message_id, self.clock())
        while len(self.callbacks) > 10_000:  # never answered: forget the oldest
            self.callbacks.popitem(last=False)
        query = {
            "id": query_id,
            "from": self.users[user_id],
            "message": dict(stored.data),
            "chat_instance": str((self.bot_id * 1_000_003 + chat.id) & 0x7FFFFFFFFFFFFFFF),
            "data": data,
        }
        self.counters.events["callback_queries"] += 1
        self.rate.user_acted(self.limits, chat.id)
        self.updates.push("callback_query", query)
        return query_id

    async def wait_for_bot_message(
        self,
        chat_id: int,
        *,
        after_seq: int = 0,
        timeout: float = 10,  # noqa: ASYNC109 - the contract with the tests
        predicate: Callable[[JSON], bool] | None = None,
    ) -> JSON:
        """The first message the bot sent or edited in the chat after `after_seq` (for tests).

        Returns it as the page sees it; raises TimeoutError when none comes in time.
        """
        chats = self.chat_family(chat_id)
        deadline = time.monotonic() + timeout
        cursor = after_seq
        while True:
            for event in self.events.after(cursor, chats):
                cursor = event["seq"]
                message = event.get("message")
                if event["type"] in ("message", "edit") and message and message["outgoing"]:
                    if predicate is None or predicate(message):
                        return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the bot sent nothing to chat {chat_id} in {timeout} s")
            await self.events.signal.wait(remaining)

    def messages(self, chat_id: int) -> list[JSON]:
        """The chat's history as stored, oldest first, as the page sees it."""
        chat = self.chats.get(chat_id)
        if chat is None:
            raise SandboxError(f"no chat {chat_id}")
        return [self.render(chat, stored) for stored in chat.messages.values()]

    def commands_for(self, chat_id: int, user_id: int) -> list[JSON]:
        """The command menu a person sees in a chat, resolved through the scopes as Telegram
        documents (narrowest scope first, each with the person's language, then without)."""
        chat = self.chats.get(chat_id)
        user = self.users.get(user_id)
        if chat is None or user is None:
            return []
        language = str(user.get("language_code") or "").split("-")[0]
        if chat.is_group:
            scopes = [
                ("chat_member", chat.id, user_id),
                ("chat", chat.id, 0),
                ("all_group_chats", 0, 0),
            ]
        else:
            scopes = [("chat", chat.id, 0), ("all_private_chats", 0, 0)]
        scopes.append(("default", 0, 0))
        for scope in scopes:
            for lang in (language, ""):
                found = self.commands.get((*scope, lang))
                if found:
                    return list(found)
        return []

    # -----------------------------------------------------------------------------------
    # Shared by the Bot API and the page

    def chat_family(self, chat_id: int) -> set[int]:
        """The chat and the supergroup it became, if it was migrated."""
        found = {chat_id}
        chat = self.chats.get(chat_id)
        while chat is not None and chat.migrated_to is not None:
            found.add(chat.migrated_to)
            chat = self.chats.get(chat.migrated_to)
        return found

    def add_message(
        self,
        chat: Chat,
        content: JSON,
        *,
        sender: JSON,
        outgoing: bool = False,
        reply_to: JSON | None = None,
        inline_markup: JSON | None = None,
        keyboard: KeyboardChange | None = None,
    ) -> StoredMessage:
        """Store a new message in the chat and tell the page."""
        data: JSON = {
            "message_id": chat.next_message_id(),
            "from": sender,
            "chat": chat.info,
            "date": int(time.time()),
        }
        if reply_to is not None:
            data["reply_to_message"] = reply_to
        data.update(content)
        if inline_markup is not None:
            data["reply_markup"] = inline_markup
        if keyboard is not None:
            if keyboard.remove:
                chat.reply_keyboard, chat.one_time_keyboard = None, False
            elif keyboard.rows is not None:
                chat.reply_keyboard, chat.one_time_keyboard = keyboard.rows, keyboard.one_time
        stored = StoredMessage(data, outgoing)
        chat.store(stored, self.history_limit)
        side = "bot_messages" if outgoing else "user_messages"
        self.counters.events[side] += 1
        counts = self.counters.chats[chat.id]
        if outgoing:
            counts.bot_messages += 1
        else:
            counts.user_messages += 1
        self.emit(chat, "message", message=self.render(chat, stored))
        return stored

    def emit(self, chat: Chat, kind: str, **fields: Any) -> None:
        self.events.add({"type": kind, "chat_id": chat.id, **fields})

    def render(self, chat: Chat, stored: StoredMessage) -> JSON:
        """A message as the page shows it: the Telegram Message plus the sandbox's fields."""
        data = stored.data
        message = dict(data)
        if "text" in data:
            message["html"] = to_html(data["text"], data.get("entities"))
        else:
            message["html"] = to_html(data.get("caption", ""), data.get("caption_entities"))
        message["outgoing"] = stored.outgoing
        photo = data.get("photo")
        message["photo_url"] = f"{FILE_URL}{photo[-1]['file_id']}" if photo else None
        document = data.get("document")
        message["document_url"] = f"{FILE_URL}{document['file_id']}" if document else None
        message["document_name"] = document.get("file_name") if document else None
        message["reply_keyboard"] = chat.reply_keyboard
        return message

    def new_file(
        self,
        kind: str,
        data: bytes,
        *,
        extension: str,
        mime_type: str,
        file_name: str | None = None,
        width: int = 0,
        height: int = 0,
    ) -> StoredFile:
        """A file as Telegram would name it (not yet kept: see `keep_file`)."""
        self._last_file += 1
        number = self._last_file
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        prefix = "AgAC" if kind == "photo" else "BQAC"
        folder = "photos" if kind == "photo" else "documents"
        return StoredFile(
            file_id=f"{prefix}AgIAAxkBAA{number:06d}{digest[:24]}",
            file_unique_id=f"AQAD{digest[:12]}",
            kind=kind,
            data=data,
            file_path=f"{folder}/file_{number}.{extension}",
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
        )

    def keep_file(self, stored: StoredFile) -> None:
        self.files[stored.file_id] = stored
        self.files_by_path[stored.file_path] = stored
        self.counters.events["files"] += 1

    def plan_faults(self, method: str) -> FaultPlan:
        return plan_faults(self.faults, method, self.random, self.clock())

    def reseed(self, seed: int) -> None:
        self.faults.seed = seed
        self.random = random.Random(seed)

    async def hang(self, seconds: float) -> None:
        """An injected timeout: sleep, but not past the sandbox's shutdown."""
        if not self.closing:
            await self._stop.wait(seconds)

    def open(self) -> None:
        self.closing = False

    async def close(self) -> None:
        """Let long polls, hanging calls and the webhook delivery end (on server shutdown)."""
        self.closing = True
        self._stop.fire()
        self.events.signal.fire()
        self.updates.signal.fire()
        await self.webhook.close()

    # -----------------------------------------------------------------------------------

    def _user_chat(self, user_id: int, chat_id: int) -> Chat:
        if user_id not in self.users:
            raise SandboxError(f"no user {user_id}")
        chat = self.chats.get(chat_id)
        while chat is not None and chat.migrated_to is not None:
            chat = self.chats.get(chat.migrated_to)  # people write in the supergroup now
        if chat is None or user_id not in chat.members:
            raise SandboxError(f"user {user_id} is not in chat {chat_id}")
        return chat

    def _bot_sees(self, chat: Chat, message: JSON) -> bool:
        """Privacy mode: in groups only commands (not addressed to another bot) and replies."""
        if not chat.is_group or not self.group_privacy:
            return True
        replied = message.get("reply_to_message")
        if replied is not None and replied.get("from", {}).get("id") == self.bot_id:
            return True
        entities = message.get("entities") or message.get("caption_entities") or []
        if not entities or entities[0]["type"] != "bot_command" or entities[0]["offset"] != 0:
            return False
        command = (message.get("text") or message.get("caption") or "")[: entities[0]["length"]]
        _, _, addressee = command.partition("@")
        return not addressee or addressee.lower() == self.bot_username.lower()
