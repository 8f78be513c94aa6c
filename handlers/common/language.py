"""/language: switch between Simplified Chinese and English."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import menus
from bot.context import BotContext
from bot.i18n import SUPPORTED_LOCALES
from bot.services import members
from handlers.common.loader import LOCALE_KEY
from handlers.common.presses import edit_or_send, fields, refuse

# Each language is named in itself, so anyone can find their own.
LANGUAGE_NAMES = {"zh_CN": "简体中文", "en": "English"}


async def choose_language(update: Update, context: BotContext) -> None:
    """Offer the languages."""
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(LANGUAGE_NAMES[loc], callback_data=f"lang:{loc}")]
            for loc in SUPPORTED_LOCALES
        ]
    )
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        context.t.gettext("Choose your language:"), reply_markup=keyboard
    )


async def set_language(update: Update, context: BotContext) -> None:
    """Save the chosen language and answer in it."""
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "lang:", 1)
    locale = parts[0] if parts else ""
    if locale not in SUPPORTED_LOCALES:
        await refuse(update, context, "language.refused")
        return
    telegram_id = query.from_user.id
    async with context.db.transaction() as session:
        await members.set_locale(session, telegram_id, locale)
    if context.user_data is not None:
        context.user_data[LOCALE_KEY] = locale
    context.t = context.runtime.i18n.get(locale)
    await query.answer()
    await edit_or_send(
        query,
        context.t.gettext("Language set to {language}.").format(language=LANGUAGE_NAMES[locale]),
    )
    if context.member is not None and update.effective_chat is not None:
        await menus.set_user_menu(context.bot, update.effective_chat.id, context.roles, context.t)


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("language", choose_language, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(set_language, pattern=r"^lang:"),
    ]
