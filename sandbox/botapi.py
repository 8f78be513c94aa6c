"""The Bot API methods: Telegram's parameters, answers and errors, on the sandbox's state.

Each method takes the call's `Params` and returns the `result` of a successful answer, or
raises `ApiError`. Method names are case-insensitive, as on Telegram.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp

from sandbox import media
from sandbox.entities import (
    EntityParseError,
    detect,
    parse_html,
    sort_entities,
    trim,
    utf16_len,
    validate_entities,
)
from sandbox.model import (
    JSON,
    MAX_CAPTION,
    MAX_TEXT,
    ApiError,
    Chat,
    KeyboardChange,
    Params,
    StoredFile,
    StoredMessage,
    bad_request,
    quoted,
)
from sandbox.updates import WEBHOOK_CONFLICT, WebhookConfig

if TYPE_CHECKING:
    from sandbox.core import Sandbox

Method = Callable[[Params], Awaitable[Any]]

# Calls that send or edit a message: the ones flood control counts.
SENDING = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendmediagroup",
        "copymessage",
        "forwardmessage",
        "editmessagetext",
        "editmessagecaption",
        "editmessagereplymarkup",
    }
)
CHAT_ACTIONS = frozenset(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
    "choose_sticker find_location record_video_note upload_video_note".split()
)
INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
KEYBOARD_BUTTON_FIELDS = (
    "request_users",
    "request_chat",
    "request_contact",
    "request_location",
    "request_poll",
    "web_app",
)
SCOPES_WITHOUT_CHAT = frozenset(
    {"default", "all_private_chats", "all_group_chats", "all_chat_administrators"}
)
SCOPES_WITH_CHAT = frozenset({"chat", "chat_administrators", "chat_member"})
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
# Kinds of InputMedia an album may hold. Documents go only with documents (Telegram's rule);
# the sandbox keeps photos and documents only (no videos or audio).
ALBUM_KINDS = ("photo", "document")
MAX_ALBUM = 10
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass
class Answer:
    """A successful answer with a description, like setWebhook's "Webhook was set"."""

    result: Any
    description: str


@dataclass
class Markup:
    inline: JSON | None = None  # an inline keyboard, part of the message
    keyboard: KeyboardChange | None = None  # a change of the chat's reply keyboard


class BotApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.methods: dict[str, Method] = {
            "getme": self.get_me,
            "getupdates": self.get_updates,
            "setwebhook": self.set_webhook,
            "deletewebhook": self.delete_webhook,
            "getwebhookinfo": self.get_webhook_info,
            "sendmessage": self.send_message,
            "sendphoto": self.send_photo,
            "senddocument": self.send_document,
            "sendmediagroup": self.send_media_group,
            "copymessage": self.copy_message,
            "forwardmessage": self.forward_message,
            "editmessagetext": self.edit_message_text,
            "editmessagecaption": self.edit_message_caption,
            "editmessagereplymarkup": self.edit_message_reply_markup,
            "deletemessage": self.delete_message,
            "deletemessages": self.delete_messages,
            "answercallbackquery": self.answer_callback_query,
            "sendchataction": self.send_chat_action,
            "getfile": self.get_file,
            "setmycommands": self.set_my_commands,
            "getmycommands": self.get_my_commands,
            "deletemycommands": self.delete_my_commands,
        }

    def method(self, name: str) -> Method | None:
        return self.methods.get(name.lower())

    # -----------------------------------------------------------------------------------
    # The bot, updates and webhooks

    async def get_me(self, p: Params) -> JSON:
        return {
            **self.sb.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.sb.group_privacy,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def get_updates(self, p: Params) -> list[JSON]:
        sb = self.sb
        if sb.webhook.active:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset = p.get_int("offset") or 0
        limit = min(max(p.get_int("limit") or 100, 1), 100)
        timeout = min(max(p.get_float("timeout") or 0.0, 0.0), 60.0)
        sb.updates.set_allowed(p.get_json("allowed_updates"))
        sb.updates.confirm(offset)
        return await sb.updates.poll(
            limit, timeout, stopped=lambda: sb.closing, webhook=lambda: sb.webhook.active
        )

    async def set_webhook(self, p: Params) -> Answer:
        url = p.get_str("url") or ""
        if not url:
            return await self.delete_webhook(p)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Telegram wants HTTPS; the sandbox also takes plain HTTP on a local address.
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get_str("secret_token")
        if secret is not None and not _SECRET.fullmatch(secret):
            raise bad_request("bad webhook: secret token contains unallowed characters")
        max_connections = p.get_int("max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = p.get_json("allowed_updates")
        self.sb.updates.set_allowed(allowed)
        if p.get_bool("drop_pending_updates"):
            self.sb.updates.drop_all()
        same = self.sb.webhook.config is not None and self.sb.webhook.config.url == url
        self.sb.webhook.set(
            WebhookConfig(
                url=url,
                secret_token=secret,
                max_connections=max_connections,
                ip_address=p.get_str("ip_address"),
                allowed_updates=allowed if isinstance(allowed, list) else None,
                has_custom_certificate="certificate" in p.files,
            )
        )
        return Answer(True, "Webhook is already set" if same else "Webhook was set")

    async def delete_webhook(self, p: Params) -> Answer:
        was_set = self.sb.webhook.active
        self.sb.webhook.delete()
        if p.get_bool("drop_pending_updates"):
            self.sb.updates.drop_all()
        return Answer(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def get_webhook_info(self, p: Params) -> JSON:
        return self.sb.webhook.info()

    # -----------------------------------------------------------------------------------
    # Sending

    async def send_message(self, p: Params) -> JSON:
        chat = self._chat(p)
        text, entities = self._formatted(p, "text", "entities", MAX_TEXT)
        if not text:
            raise bad_request("message text is empty")
        markup = self._markup(p)
        reply = self._reply_to(p, chat)
        content: JSON = {"text": text}
        if entities:
            content["entities"] = entities
        self._admit(chat)
        return self._send(chat, content, markup, reply).data

    async def send_photo(self, p: Params) -> JSON:
        return await self._send_file(p, "photo")

    async def send_document(self, p: Params) -> JSON:
        return await self._send_file(p, "document")

    async def _send_file(self, p: Params, kind: str) -> JSON:
        chat = self._chat(p)
        stored_file, is_new = await self._input_file(p, kind)
        caption = self._caption(p)
        markup = self._markup(p)
        reply = self._reply_to(p, chat)
        self._admit(chat)
        if is_new:
            self.sb.keep_file(stored_file)
        content = file_content(stored_file)
        content.update(caption)
        return self._send(chat, content, markup, reply).data

    async def send_media_group(self, p: Params) -> list[JSON]:
        """An album: 2–10 messages sharing one `media_group_id`, each with its own caption.

        Nothing is stored unless the whole album is valid and admitted. Telegram itself sends a
        lone item as an ordinary message, but its documentation asks for 2–10 items; the
        sandbox holds a bot to that (a bot with one photo should call sendPhoto).
        """
        chat = self._chat(p)
        items = p.get_json("media")
        if items is None or items == []:
            raise bad_request("there are no messages to send")
        if not isinstance(items, list):
            raise bad_request("can't parse media JSON object")
        if len(items) > MAX_ALBUM:
            raise bad_request("too many messages to send as an album")
        if len(items) < 2:
            raise bad_request("media must include 2-10 items")
        kinds = []
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if not isinstance(kind, str):
                raise bad_request("can't parse InputMedia JSON object")
            if kind not in ALBUM_KINDS:
                raise bad_request(f'can\'t parse InputMedia: type "{kind}" is unsupported')
            kinds.append(kind)
        if "document" in kinds and len(set(kinds)) > 1:
            raise bad_request("document can't be mixed with other media types")
        reply = self._reply_to(p, chat)
        contents: list[tuple[StoredFile, bool, JSON]] = []
        for position, (item, kind) in enumerate(zip(items, kinds, strict=True), 1):
            sub = _item_params(item, kind, p)
            try:
                stored_file, is_new = await self._input_file(sub, kind)
            except ApiError as exc:
                # Telegram's servers name the item whose picture they could not process.
                reason = exc.description.removeprefix("Bad Request: ")
                if reason in ("IMAGE_PROCESS_FAILED", "PHOTO_INVALID_DIMENSIONS"):
                    raise bad_request(
                        f'failed to send message #{position} with the error message "{reason}"'
                    ) from None
                raise
            contents.append((stored_file, is_new, self._caption(sub)))
        retry = self.sb.rate.admit(self.sb.limits, chat.id, chat.is_group, len(contents))
        if retry is not None:
            self._refuse(chat, retry)
        group_id = self.sb.new_media_group_id()
        sent = []
        for stored_file, is_new, caption in contents:
            if is_new:
                self.sb.keep_file(stored_file)
            content = {"media_group_id": group_id, **file_content(stored_file), **caption}
            sent.append(self._send(chat, content, Markup(), reply).data)
        return sent

    async def copy_message(self, p: Params) -> JSON:
        chat = self._chat(p)
        source = self._source_message(p)
        content = {k: v for k, v in source.data.items() if k in _COPIED}
        if not content:
            raise bad_request("message can't be copied")
        if "caption" in p.values and "text" not in content:
            for key in ("caption", "caption_entities"):
                content.pop(key, None)
            content.update(self._caption(p))
        markup = self._markup(p)
        reply = self._reply_to(p, chat)
        self._admit(chat)
        return {"message_id": self._send(chat, content, markup, reply).data["message_id"]}

    async def forward_message(self, p: Params) -> JSON:
        chat = self._chat(p)
        source = self._source_message(p)
        content = {k: v for k, v in source.data.items() if k in _COPIED}
        if not content:
            raise bad_request("message can't be forwarded")
        sender = source.data["from"]
        origin: JSON = {"type": "user", "sender_user": sender, "date": source.data["date"]}
        self._admit(chat)
        return self._send(chat, {"forward_origin": origin, **content}, Markup(), None).data

    def _send(
        self, chat: Chat, content: JSON, markup: Markup, reply: JSON | None
    ) -> StoredMessage:
        return self.sb.add_message(
            chat,
            content,
            sender=self.sb.bot_user,
            outgoing=True,
            reply_to=reply,
            inline_markup=markup.inline,
            keyboard=markup.keyboard,
        )

    async def send_chat_action(self, p: Params) -> bool:
        chat = self._chat(p)
        action = p.get_str("action")
        if action is None:
            raise bad_request("action is empty")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.sb.emit(chat, "chat_action", action=action)
        return True

    # -----------------------------------------------------------------------------------
    # Editing and deleting

    async def edit_message_text(self, p: Params) -> JSON:
        chat, stored = self._editable(p)
        if "text" not in stored.data:
            raise bad_request("there is no text in the message to edit")
        text, entities = self._formatted(p, "text", "entities", MAX_TEXT)
        if not text:
            raise bad_request("message text is empty")
        changes: JSON = {"text": text, "entities": entities}
        return self._edit(p, chat, stored, changes)

    async def edit_message_caption(self, p: Params) -> JSON:
        chat, stored = self._editable(p)
        if "photo" not in stored.data and "document" not in stored.data:
            raise bad_request("there is no caption in the message to edit")
        caption = self._caption(p)
        changes: JSON = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
        }
        return self._edit(p, chat, stored, changes)

    async def edit_message_reply_markup(self, p: Params) -> JSON:
        chat, stored = self._editable(p)
        return self._edit(p, chat, stored, {})

    def _editable(self, p: Params) -> tuple[Chat, StoredMessage]:
        if p.raw("inline_message_id") is not None:
            raise bad_request("MESSAGE_ID_INVALID")  # the sandbox has no inline messages
        chat = self._chat(p)
        message_id = p.get_int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        stored = chat.messages.get(message_id)
        if stored is None:
            raise bad_request("message to edit not found")
        if not stored.outgoing:
            raise bad_request("message can't be edited")
        return chat, stored

    def _edit(self, p: Params, chat: Chat, stored: StoredMessage, changes: JSON) -> JSON:
        """Apply an edit. Without reply_markup the inline keyboard goes, as on Telegram."""
        markup = self._markup(p, inline_only=True).inline
        data = stored.data
        unchanged = data.get("reply_markup") == markup and all(
            data.get(key) == (value or None) for key, value in changes.items()
        )
        if unchanged:
            raise bad_request(NOT_MODIFIED)
        self._admit(chat)
        for key, value in [*changes.items(), ("reply_markup", markup)]:
            if value:
                data[key] = value
            else:
                data.pop(key, None)
        data["edit_date"] = int(time.time())
        self.sb.counters.events["edits"] += 1
        self.sb.emit(chat, "edit", message=self.sb.render(chat, stored))
        return data

    async def delete_message(self, p: Params) -> bool:
        chat = self._chat(p)
        message_id = p.get_int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        if chat.messages.pop(message_id, None) is None:
            raise bad_request("message to delete not found")
        self.sb.counters.events["deletes"] += 1
        self.sb.emit(chat, "delete", message_id=message_id)
        return True

    async def delete_messages(self, p: Params) -> bool:
        chat = self._chat(p)
        ids = p.get_json("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise bad_request("message_ids must be a list of 1-100 message identifiers")
        for message_id in ids:
            if isinstance(message_id, int) and chat.messages.pop(message_id, None) is not None:
                self.sb.counters.events["deletes"] += 1
                self.sb.emit(chat, "delete", message_id=message_id)
        return True

    async def answer_callback_query(self, p: Params) -> bool:
        sb = self.sb
        query_id = p.get_str("callback_query_id") or ""
        pending = sb.callbacks.pop(query_id, None)
        too_old = (
            pending is not None
            and sb.limits.enabled
            and sb.clock() - pending.created > sb.limits.callback_query_seconds
        )
        if pending is None or too_old:
            raise bad_request(QUERY_TOO_OLD)
        text = p.get_str("text") or ""
        if len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        chat = sb.chats[pending.chat_id]
        sb.counters.events["callback_answers"] += 1
        sb.emit(
            chat,
            "callback_answer",
            user_id=pending.user_id,
            message_id=pending.message_id,
            callback_query_id=query_id,
            text=text,
            show_alert=p.get_bool("show_alert"),
            url=p.get_str("url"),
        )
        return True

    # -----------------------------------------------------------------------------------
    # Files

    async def get_file(self, p: Params) -> JSON:
        stored = self.sb.files.get(p.get_str("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > media.MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return stored.file_info()

    async def _input_file(self, p: Params, kind: str) -> tuple[StoredFile, bool]:
        """The file of sendPhoto/sendDocument: uploaded, a known file_id, or an HTTP URL.

        Returns the file and whether it is new (kept only once the message is sent).
        """
        upload = p.files.get(kind)
        value = p.raw(kind)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = p.files.get(value[len("attach://") :])
            if upload is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
        if upload is not None:
            data, name, declared = upload.data, upload.filename, upload.content_type
        elif not isinstance(value, str):
            raise bad_request(f"there is no {kind} in the request")
        elif value.startswith(("http://", "https://")):
            data = await fetch(value)
            name = urllib.parse.unquote(urllib.parse.urlsplit(value).path.rsplit("/", 1)[-1])
            declared = None
        else:
            known = self.sb.files.get(value)
            if known is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            if known.kind != kind:
                raise bad_request(f"can't use file of type {known.kind.title()} as {kind.title()}")
            return known, False
        return self.new_file(kind, data, name or None, declared), True

    def new_file(
        self, kind: str, data: bytes, name: str | None, declared: str | None
    ) -> StoredFile:
        if not data:
            raise bad_request("file must be non-empty")
        if kind == "photo":
            if len(data) > media.MAX_PHOTO_BYTES:
                raise bad_request("PHOTO_INVALID_DIMENSIONS")
            image = media.image_size(data)
            if image is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            ext, width, height = image
            mime = "image/jpeg" if ext == "jpg" else f"image/{ext}"
            return self.sb.new_file(
                kind, data, extension=ext, mime_type=mime, width=width, height=height
            )
        if len(data) > media.MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        mime = media.document_mime(name, declared)
        return self.sb.new_file(
            kind, data, extension=media.extension(name, mime), mime_type=mime, file_name=name
        )

    # -----------------------------------------------------------------------------------
    # Commands

    async def set_my_commands(self, p: Params) -> bool:
        key = self._scope_key(p)
        raw = p.get_json("commands")
        if not isinstance(raw, list):
            raise bad_request("can't parse commands JSON object")
        if len(raw) > 100:
            raise bad_request("too many commands specified")
        commands = [_command(item) for item in raw]
        if commands:
            self.sb.commands[key] = commands
        else:
            self.sb.commands.pop(key, None)
        return True

    async def get_my_commands(self, p: Params) -> list[JSON]:
        return list(self.sb.commands.get(self._scope_key(p), []))

    async def delete_my_commands(self, p: Params) -> bool:
        self.sb.commands.pop(self._scope_key(p), None)
        return True

    def _scope_key(self, p: Params) -> tuple[str, int, int, str]:
        """(scope type, chat id, user id, language): commands are kept per scope and language."""
        language = p.get_str("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        scope = p.get_json("scope") or {"type": "default"}
        kind = scope.get("type") if isinstance(scope, dict) else None
        if kind in SCOPES_WITHOUT_CHAT:
            return (str(kind), 0, 0, language)
        if kind not in SCOPES_WITH_CHAT:
            raise bad_request("can't parse BotCommandScope JSON object")
        chat_id = _as_int(scope.get("chat_id"))
        chat = self.sb.chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise bad_request("chat not found")
        user_id = 0
        if kind == "chat_member":
            user_id = _as_int(scope.get("user_id")) or 0
            if user_id not in chat.members:
                raise bad_request("user not found")
        elif kind == "chat_administrators" and not chat.is_group:
            raise bad_request("can't use chat_administrators scope in private chats")
        return (str(kind), chat.id, user_id, language)

    # -----------------------------------------------------------------------------------
    # Parameters shared by several methods

    def _chat(self, p: Params, name: str = "chat_id") -> Chat:
        """The chat a call writes to, with Telegram's refusals (missing, migrated, blocked)."""
        raw = p.raw(name)
        if raw is None:
            raise bad_request(f"{name} is empty")
        chat_id = _as_int(raw)
        chat = self.sb.chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise bad_request("chat not found")
        counters = self.sb.counters
        counters.chats[chat.id].calls += 1
        if chat.migrated_to is not None:
            counters.faults["migrated"] += 1
            raise bad_request(
                "group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        faults = self.sb.faults
        if chat.type == "private" and faults.enabled and chat.id in faults.blocked_users:
            counters.faults["blocked"] += 1
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _source_message(self, p: Params) -> StoredMessage:
        from_id = _as_int(p.raw("from_chat_id"))
        source_chat = self.sb.chats.get(from_id) if from_id is not None else None
        if source_chat is None:
            raise bad_request("chat not found")
        message_id = p.get_int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        source = source_chat.messages.get(message_id)
        if source is None:
            raise bad_request("message to copy not found")
        return source

    def _admit(self, chat: Chat) -> None:
        """Flood control for a message about to be sent or edited."""
        retry = self.sb.rate.admit(self.sb.limits, chat.id, chat.is_group)
        if retry is not None:
            self._refuse(chat, retry)

    def _refuse(self, chat: Chat, retry: int) -> NoReturn:
        self.sb.counters.rate_limited += 1
        self.sb.counters.chats[chat.id].rate_limited += 1
        raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})

    def _formatted(
        self, p: Params, text_key: str, entities_key: str, limit: int
    ) -> tuple[str, list[JSON]]:
        """Text and its entities after parsing, trimming and finding commands and links."""
        text = p.get_str(text_key) or ""
        raw_entities = p.get_json(entities_key)
        mode = (p.get_str("parse_mode") or "").lower()
        entities: list[JSON]
        if raw_entities is not None:
            try:
                entities = validate_entities(raw_entities, utf16_len(text))
            except ValueError:
                raise bad_request(f"can't parse {entities_key} JSON object") from None
        elif mode == "html":
            try:
                text, entities = parse_html(text, self.sb.users)
            except EntityParseError as exc:
                raise bad_request(f"can't parse entities: {exc}") from None
        elif mode in ("markdown", "markdownv2"):
            raise bad_request("can't parse entities: the sandbox only implements HTML parse mode")
        elif mode:
            raise bad_request("unsupported parse_mode")
        else:
            entities = []
        text, entities = trim(text, entities)
        if len(text) > limit:
            raise bad_request(
                "message is too long" if limit == MAX_TEXT else "message caption is too long"
            )
        return text, sort_entities(entities + detect(text, entities))

    def _caption(self, p: Params) -> JSON:
        caption, entities = self._formatted(p, "caption", "caption_entities", MAX_CAPTION)
        found: JSON = {}
        if caption:
            found["caption"] = caption
            if entities:
                found["caption_entities"] = entities
        return found

    def _markup(self, p: Params, *, inline_only: bool = False) -> Markup:
        raw = p.get_json("reply_markup")
        if raw is None:
            return Markup()
        if not isinstance(raw, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in raw:
            return Markup(inline=_inline_keyboard(raw["inline_keyboard"]))
        if inline_only:
            raise bad_request("can't parse inline keyboard markup JSON object")
        if "keyboard" in raw:
            rows = _reply_keyboard(raw["keyboard"])
            return Markup(
                keyboard=KeyboardChange(rows, one_time=bool(raw.get("one_time_keyboard")))
            )
        if raw.get("remove_keyboard"):
            return Markup(keyboard=KeyboardChange(remove=True))
        if raw.get("force_reply"):
            return Markup()
        raise bad_request("can't parse reply keyboard markup JSON object")

    def _reply_to(self, p: Params, chat: Chat) -> JSON | None:
        """The message replied to (reply_parameters, or the older reply_to_message_id)."""
        params = p.get_json("reply_parameters")
        if params is None:
            message_id = p.get_int("reply_to_message_id")
            if message_id is None:
                return None
            params = {
                "message_id": message_id,
                "allow_sending_without_reply": p.get_bool("allow_sending_without_reply"),
            }
        if not isinstance(params, dict) or not isinstance(params.get("message_id"), int):
            raise bad_request("can't parse reply parameters JSON object")
        same_chat = _as_int(params.get("chat_id")) in (None, chat.id)
        replied = chat.messages.get(params["message_id"]) if same_chat else None
        if replied is None:
            if params.get("allow_sending_without_reply"):
                return None
            raise bad_request("message to be replied not found")
        return quoted(replied.data)


_COPIED = ("text", "entities", "photo", "document", "caption", "caption_entities")


def _item_params(item: JSON, kind: str, p: Params) -> Params:
    """One InputMedia of an album as the parameters of sendPhoto/sendDocument would be."""
    media = item.get("media")
    if not isinstance(media, str) or not media:
        raise bad_request("can't parse InputMedia: media not found")
    values: JSON = {kind: media}
    for key in ("caption", "parse_mode", "caption_entities"):
        if key in item:
            values[key] = item[key]
    files = {}
    if media.startswith("attach://"):
        name = media[len("attach://") :]
        if name not in p.files:
            raise bad_request("can't parse InputMedia: media not found")
        files[name] = p.files[name]
    return Params(values, files)


def file_content(stored: StoredFile) -> JSON:
    """The message field for a file: a list of PhotoSize (one size here) or a Document."""
    base = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.data),
    }
    if stored.kind == "photo":
        return {"photo": [{**base, "width": stored.width, "height": stored.height}]}
    document = {**base, "mime_type": stored.mime_type}
    if stored.file_name:
        document["file_name"] = stored.file_name
    return {"document": document}


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _command(item: Any) -> JSON:
    if not isinstance(item, dict):
        raise bad_request("can't parse BotCommand JSON object")
    command, description = item.get("command"), item.get("description")
    if not isinstance(command, str) or not _COMMAND.fullmatch(command):
        raise bad_request("BOT_COMMAND_INVALID")
    if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
        raise bad_request("command description is empty")
    return {"command": command, "description": description}


def _rows(raw: Any) -> list[list[Any]]:
    if not isinstance(raw, list) or not all(isinstance(row, list) for row in raw):
        raise bad_request("can't parse reply keyboard markup JSON object")
    return raw


def _inline_keyboard(raw: Any) -> JSON | None:
    """A checked inline keyboard; None when it has no buttons (Telegram then shows none)."""
    rows = []
    for row in _rows(raw):
        buttons = []
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request("can't parse inline keyboard button: Text must be a string")
            actions = [key for key in INLINE_BUTTON_ACTIONS if key in button]
            if not actions:
                raise bad_request("text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if "callback_data" in button and (
                not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64
            ):
                raise bad_request("BUTTON_DATA_INVALID")
            url = button.get("url")
            if "url" in button and (
                not isinstance(url, str)
                or not url.lower().startswith(("http://", "https://", "tg://"))
            ):
                raise bad_request("BUTTON_URL_INVALID")
            buttons.append({"text": button["text"], **{k: button[k] for k in actions}})
        if buttons:
            rows.append(buttons)
    return {"inline_keyboard": rows} if rows else None


def _reply_keyboard(raw: Any) -> list[list[JSON]]:
    """Reply keyboard rows, each button as {"text": …} whether sent as a string or an object."""
    rows = []
    for row in _rows(raw):
        buttons = []
        for button in row:
            if isinstance(button, str):
                buttons.append({"text": button})
            elif isinstance(button, dict) and isinstance(button.get("text"), str):
                extra = {k: button[k] for k in KEYBOARD_BUTTON_FIELDS if k in button}
                buttons.append({"text": button["text"], **extra})
            else:
                raise bad_request("can't parse keyboard button: Text must be a string")
        if buttons:
            rows.append(buttons)
    return rows


async def fetch(url: str) -> bytes:
    """Download a file the bot named by URL, as Telegram would (size-limited, 10 s)."""
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as response:
                if response.status != 200:
                    raise bad_request("failed to get HTTP URL content")
                data = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    data += chunk
                    if len(data) > media.MAX_UPLOAD_BYTES:
                        raise bad_request("failed to get HTTP URL content")
    except (aiohttp.ClientError, TimeoutError):
        raise bad_request("failed to get HTTP URL content") from None
    return bytes(data)
