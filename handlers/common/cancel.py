"""/cancel: leave whatever step the user is in."""

from __future__ import annotations

from telegram import ReplyKeyboardRemove, Update
from telegram.ext import ConversationHandler

from bot.context import BotContext
from handlers.common.presses import refuse


async def cancel(update: Update, context: BotContext) -> int:
    """Drop the current step and say so."""
    if context.user_data is not None:
        # Pending choices belong to the step being cancelled; the language choice stays.
        for key in [k for k in context.user_data if k.startswith("pending")]:
            del context.user_data[key]
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        context.t.gettext("Cancelled. Send /help to see what you can do."),
        reply_markup=ReplyKeyboardRemove(),
    )
    return ConversationHandler.END


async def nothing_to_cancel(update: Update, context: BotContext) -> None:
    """/cancel outside any conversation."""
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        context.t.gettext("There is nothing to cancel. Send /help to see what you can do.")
    )


async def stale_button(update: Update, context: BotContext) -> None:
    """A press on a button whose step is over, or whose data we do not know."""
    await refuse(
        update,
        context,
        "button.stale",
        text=context.t.gettext("This button is no longer active. Send /start to begin again."),
    )
