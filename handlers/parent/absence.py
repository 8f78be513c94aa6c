"""A guardian answers an absence alert with the reason, which reaches the teacher.

The alert (`attendance.ALERT`) carries 说明原因 (ab:r:<mark>). It opens the common reasons as
buttons (ab:s:<mark>:<reason>) and 其他原因 (ab:o:<mark>), after which the next text message
is the reason. Each answer is checked on the server: the mark must be of the member's child.
"""

from __future__ import annotations

import html
import warnings
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import attendance
from handlers.common.keyboards import grid, nav
from handlers.common.presses import edit_or_send, fields, ints, refuse
from storage.models import utcnow

TYPING = 0
PENDING = "absence_reason_for"  # user_data: the mark whose reason is being typed
CANCEL = "ab:c"
THANKS = N_("✅ Thank you. The teacher now knows why {child} missed {course}: {reason}")


def _reasons(t: Translator, mark_id: int) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(t.gettext(label), callback_data=f"ab:s:{mark_id}:{key}")
        for key, label in attendance.REASONS
    ]
    buttons.append(
        InlineKeyboardButton(t.gettext("Another reason…"), callback_data=f"ab:o:{mark_id}")
    )
    rows = grid(buttons, per_row=2)
    rows.append(nav(t, back=f"ab:b:{mark_id}"))
    return InlineKeyboardMarkup(rows)


def _alert_markup(t: Translator, mark_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t.gettext("Give the reason"), callback_data=f"ab:r:{mark_id}")]]
    )


async def open_reasons(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    values = ints(query.data, "ab:r:", 1) or ints(query.data, "ab:b:", 1)
    if values is None:
        await refuse(update, context, attendance.REFUSED)
        return
    await query.answer()
    back = (query.data or "").startswith("ab:b:")
    markup = _alert_markup(context.t, values[0]) if back else _reasons(context.t, values[0])
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(markup)


async def _record(
    update: Update, context: BotContext, mark_id: int, reason: str, pressed: str | None
) -> bool:
    """Save the reason and confirm it under the alert (a press) or as a reply (typed)."""
    t = context.t
    async with context.db.transaction() as session:
        given = await attendance.give_reason(
            session, context.member, mark_id, reason, utcnow(), pressed=pressed
        )
    if given is None:
        await refuse(update, context, attendance.REFUSED, audited=True)
        return False
    said = t.gettext(THANKS).format(
        child=html.escape(given.child),
        course=html.escape(given.course),
        reason=html.escape(t.gettext(given.reason)),
    )
    query = update.callback_query
    if query is not None:
        await query.answer()
        message = query.message
        original = message.text_html if isinstance(message, Message) and message.text else ""
        await edit_or_send(query, f"{original}\n\n{said}".strip(), parse_mode=ParseMode.HTML)
    else:
        message = update.effective_message
        assert message is not None
        await message.reply_text(said, parse_mode=ParseMode.HTML)
    return True


async def chosen(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "ab:s:", 2)
    labels = dict(attendance.REASONS)
    mark = ints(parts[0], "", 1) if parts else None
    if parts is None or mark is None or parts[1] not in labels:
        await refuse(update, context, attendance.REFUSED)
        return
    await _record(update, context, mark[0], labels[parts[1]], query.data)


async def ask_typed(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None
    values = ints(query.data, "ab:o:", 1)
    if values is None or context.user_data is None:
        await refuse(update, context, attendance.REFUSED)
        return ConversationHandler.END
    context.user_data[PENDING] = values[0]
    await query.answer()
    t = context.t
    message = query.message
    assert isinstance(message, Message)
    await message.reply_text(
        t.gettext("Please type the reason in one message (at most 200 characters)."),
        reply_markup=InlineKeyboardMarkup([nav(t, cancel=CANCEL)]),
    )
    return TYPING


async def typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    mark_id = context.user_data.pop(PENDING, None) if context.user_data is not None else None
    if mark_id is None:
        return ConversationHandler.END
    text = (message.text or "").strip()
    if not text:
        if context.user_data is not None:
            context.user_data[PENDING] = mark_id
        await message.reply_text(context.t.gettext("Please type the reason in words."))
        return TYPING
    await _record(update, context, int(mark_id), text, None)
    return ConversationHandler.END


async def cancel(update: Update, context: BotContext) -> int:
    if context.user_data is not None:
        context.user_data.pop(PENDING, None)
    t = context.t
    said = t.gettext("Cancelled. You can still press “Give the reason” on the alert.")
    query = update.callback_query
    if query is not None:
        await query.answer()
        await edit_or_send(query, said)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(said)
    return ConversationHandler.END


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[CallbackQueryHandler(ask_typed, pattern=r"^ab:o:")],
            states={
                TYPING: [MessageHandler(private & filters.TEXT & ~filters.COMMAND, typed)],
            },
            fallbacks=[
                CommandHandler("cancel", cancel),
                CallbackQueryHandler(cancel, pattern=r"^ab:c$"),
            ],
            name="absence_reason",
            persistent=True,
            allow_reentry=True,
        )
    return [
        conversation,
        CallbackQueryHandler(open_reasons, pattern=r"^ab:[rb]:"),
        CallbackQueryHandler(chosen, pattern=r"^ab:s:"),
    ]
