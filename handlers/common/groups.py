"""A class group stays quiet (docs/UX.md, convention 8).

A personal command typed in a group is answered in the person's private chat when Kehou has
one (a linked member's chat id), and the group sees nothing. Otherwise the group gets one short
pointer, at most once an hour per person, whose deep link opens the command they typed.
"""

from __future__ import annotations

import time

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import CommandHandler, filters

from bot import menus
from bot.context import BotContext
from handlers.common import intents

POINTED_AT = "group_pointer_at"  # when this person last got a public pointer (epoch seconds)
QUIET_SECONDS = 3600


def _command(text: str | None) -> tuple[str, str]:
    """The command as typed, and the one its link opens."""
    word = (text or "/help").split(maxsplit=1)[0]
    name = word[1:].split("@", 1)[0].lower()
    # /start and /cancel name no flow of their own: their link opens /help.
    flow = name if name in menus.PRIVATE_ONLY and name not in ("start", "cancel") else "help"
    return name, flow


async def redirect_to_private(update: Update, context: BotContext) -> None:
    """Answer in private if we can; else point there, once an hour at most."""
    t = context.t
    message = update.effective_message
    assert message is not None
    typed, command = _command(message.text)
    if await _answer_privately(update, context, typed, command):
        return
    user_data = context.user_data if context.user_data is not None else {}
    now = time.time()
    if now - float(user_data.get(POINTED_AT, 0)) < QUIET_SECONDS:
        return
    user_data[POINTED_AT] = now
    url = f"https://t.me/{context.bot.username}?start={command}"
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t.gettext("Open /{command} in private").format(command=command), url=url
                )
            ]
        ]
    )
    await message.reply_text(
        t.gettext(
            "I answer this in a private chat, so your family's information stays out of the group."
        ),
        reply_markup=keyboard,
    )


async def _answer_privately(update: Update, context: BotContext, typed: str, command: str) -> bool:
    """Send the answer to the member's private chat; False if there is none to send to."""
    member = context.member
    chat = update.effective_chat
    if member is None or member.chat_id is None or chat is None:
        return False
    t = context.t
    button = intents.button(t, command)
    text = t.gettext(
        "You sent /{command} in “{group}”. I answer here, so your family's information stays "
        "out of the group."
    ).format(command=typed, group=chat.title or "")
    if button is None:
        text += "\n" + intents.tap_command(t, command)
    try:
        await context.bot.send_message(
            member.chat_id,
            text,
            reply_markup=InlineKeyboardMarkup([[button]]) if button else None,
        )
    except TelegramError:
        return False  # blocked, or the chat is gone: point to it publicly instead
    return True


def handlers() -> list[CommandHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler(menus.PRIVATE_ONLY, redirect_to_private, filters=filters.ChatType.GROUPS)
    ]
