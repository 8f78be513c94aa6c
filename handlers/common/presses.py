"""Button presses: parsing callback data, refusing a press that may not act, answering it.

Callback data comes from the user's client and is never trusted. Every handler reads it with
`fields` (or `ints`), which checks its shape and keeps each id inside the database's integer
range, and turns away a press it cannot act on with `refuse`, which answers the press and
writes an audit row whoever pressed it. The answer to a press goes through `edit_or_send`: the
message pressed may have been deleted, or be too old to edit, by the time the press arrives.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.context import BotContext
from bot.services import guard

log = logging.getLogger(__name__)

# What Telegram answers (lower-cased, after "Bad Request: ") when the message is not there to
# edit any more, or may no longer be edited: then the answer goes out as a new message.
GONE = (
    "message to edit not found",
    "message to be edited not found",
    "message can't be edited",
    "message_id_invalid",
)
# The message already shows exactly this (a double tap): there is nothing to do.
UNCHANGED = "message is not modified"

# Ids are 32-bit integers on PostgreSQL (and fit SQLite's 64-bit integers): a larger number in
# a button cannot name a row, and binding it would raise OverflowError in the driver.
MAX_ID = 2**31 - 1


def fields(data: str | None, prefix: str, count: int) -> list[str] | None:
    """The `count` colon-separated fields after `prefix`, or None if the data has another shape."""
    if data is None or not data.startswith(prefix):
        return None
    parts = data[len(prefix) :].split(":")
    return parts if len(parts) == count else None


def as_int(text: str) -> int | None:
    """A non-negative integer an id column can hold, or None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def ints(data: str | None, prefix: str, count: int) -> list[int] | None:
    """`count` integers after `prefix` (`of:12:1` → [12, 1]), or None if any is not one."""
    parts = fields(data, prefix, count)
    if parts is None:
        return None
    values = [as_int(p) for p in parts]
    if any(v is None for v in values):
        return None
    return [v for v in values if v is not None]


async def refuse(
    update: Update,
    context: BotContext,
    action: str,
    *,
    answered: bool = False,
    audited: bool = False,
    text: str | None = None,
) -> None:
    """Turn a press away: audit it (whatever roles the presser has) and tell them politely.

    `action` names what was refused (``enrolment.refused``, ``course.refused`` …); `answered`
    says the press was acknowledged already, so the explanation replaces the pressed message
    (or comes as a new one if that message is gone); `audited` says the service's guard
    recorded the refusal already, in the action's own transaction (`bot.services.guard`); a
    stranger's press, which no school's log can hold, goes to the operator's log here.
    """
    query = update.callback_query
    if not audited or context.member is None:
        async with context.db.transaction() as session:
            user = update.effective_user
            guard.refused(
                session,
                context.member,
                action,
                query.data if query else None,
                user.id if user else None,
            )
    message = text or context.t.gettext("This button is no longer active.")
    if query is None:
        return
    if answered:
        await edit_or_send(query, message)
    else:
        await query.answer(message, show_alert=True)


def _gone(error: BadRequest) -> bool:
    text = error.message.lower()
    return any(reason in text for reason in GONE)


async def edit_or_send(target: CallbackQuery | Message, text: str, **kwargs: Any) -> Message:
    """Show `text` in place of the pressed message (or of `target`), or as a new message.

    `kwargs` are those `edit_message_text` and `send_message` share (`parse_mode`,
    `reply_markup`, `disable_web_page_preview` …). Returns the message that now shows the text.
    """
    message = target.message if isinstance(target, CallbackQuery) else target
    if message is None:  # only inline-mode presses lack a message; Kehou sends none of those
        raise ValueError("edit_or_send needs a press on a message in a chat")
    if isinstance(message, Message):
        try:
            edited = await message.edit_text(text, **kwargs)
        except BadRequest as error:
            if UNCHANGED in error.message.lower():
                return message
            if not _gone(error):
                raise
            log.info("message %s is gone; answering with a new one", message.message_id)
        else:
            return edited if isinstance(edited, Message) else message
    # An inaccessible message (too old for the bot to see) can only be answered anew.
    return await message.get_bot().send_message(message.chat.id, text, **kwargs)


async def edit_markup(query: CallbackQuery, markup: InlineKeyboardMarkup | None) -> None:
    """Change the pressed message's buttons; nothing to do if it is gone or already shows them.

    The press was answered already, so a message deleted meanwhile needs no new one.
    """
    if not isinstance(query.message, Message):
        return
    try:
        await query.message.edit_reply_markup(markup)
    except BadRequest as error:
        if not (UNCHANGED in error.message.lower() or _gone(error)):
            raise


async def show_screen(
    update: Update, text: str, rows: list[list[InlineKeyboardButton]], *, new: bool = False
) -> None:
    """A step's screen (HTML): in place of the pressed message, or as a new message when the
    step began with a typed message (or `new`). Empty rows are dropped."""
    markup = InlineKeyboardMarkup([r for r in rows if r])
    query = update.callback_query
    if query is not None and not new:
        await edit_or_send(query, text, reply_markup=markup, parse_mode=ParseMode.HTML)
        return
    message = update.effective_message
    assert message is not None
    await message.reply_text(text, reply_markup=markup, parse_mode=ParseMode.HTML)


async def say(update: Update, text: str) -> None:
    """A screen with no buttons (HTML): in place of the pressed message, or as an answer to a
    typed one."""
    query = update.callback_query
    if query is not None:
        await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=None)
        return
    message = update.effective_message
    assert message is not None
    await message.reply_text(text, parse_mode=ParseMode.HTML)
