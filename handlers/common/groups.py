"""Commands sent in a group: personal things are answered with a link to the private chat."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CommandHandler, filters

from bot import menus
from bot.context import BotContext


async def redirect_to_private(update: Update, context: BotContext) -> None:
    """Point to the private chat instead of answering in front of the group."""
    t = context.t
    url = f"https://t.me/{context.bot.username}?start=help"
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton(t.gettext("Open a private chat with me"), url=url)]]
    )
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        t.gettext(
            "To keep your family's information out of the group, I answer this in a private "
            "chat. Tap the button below."
        ),
        reply_markup=keyboard,
    )


def handlers() -> list[CommandHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler(menus.PRIVATE_ONLY, redirect_to_private, filters=filters.ChatType.GROUPS)
    ]
