"""/notices: a parent chooses to get non-urgent messages at once or in one daily digest."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import Translator
from bot.services import notices
from handlers.common.presses import edit_or_send, fields, refuse
from storage.models import NoticeMode


def _text(t: Translator, mode: NoticeMode) -> str:
    current = (
        t.gettext("Right now: each message as it comes.")
        if mode is NoticeMode.INSTANT
        else t.gettext("Right now: one daily digest.")
    )
    return (
        t.gettext(
            "How would you like to get the school's non-urgent notices? "
            "Urgent ones, such as an absence alert or a safety notice, always come at once."
        )
        + "\n"
        + current
    )


def _markup(t: Translator, mode: NoticeMode) -> InlineKeyboardMarkup:
    def mark(option: NoticeMode) -> str:
        return "● " if option is mode else "○ "

    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    mark(NoticeMode.INSTANT) + t.gettext("At once"), callback_data="nt:instant"
                )
            ],
            [
                InlineKeyboardButton(
                    mark(NoticeMode.DIGEST) + t.gettext("One daily digest"),
                    callback_data="nt:digest",
                )
            ],
        ]
    )


async def show(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    async with context.db.transaction() as session:
        mode = await notices.mode_of(session, context.member)
    if mode is None:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    await message.reply_text(_text(t, mode), reply_markup=_markup(t, mode))


async def choose(update: Update, context: BotContext) -> None:
    """Save the parent's choice (re-checking that they are a guardian) and show it."""
    query = update.callback_query
    assert query is not None
    t = context.t
    parts = fields(query.data, "nt:", 1)
    mode = next((m for m in NoticeMode if parts == [m.value]), None)
    if mode is None:
        await refuse(update, context, notices.REFUSED)
        return
    async with context.db.transaction() as session:
        chosen = await notices.choose(session, context.member, mode, pressed=query.data)
    if not chosen:
        await refuse(update, context, notices.REFUSED, audited=True)
        return
    await query.answer(t.gettext("Saved."))
    await edit_or_send(query, _text(t, mode), reply_markup=_markup(t, mode))


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("notices", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(choose, pattern=r"^nt:"),
    ]
