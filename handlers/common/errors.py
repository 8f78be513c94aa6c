"""The global error handler: an apology with a reference for the user, the trace for the log."""

from __future__ import annotations

import logging
import secrets

from telegram import Update
from telegram.error import TelegramError

from bot.context import BotContext
from handlers.common.loader import identify

log = logging.getLogger("kehou.errors")


async def report_error(update: object, context: BotContext) -> None:
    """Log the failure under a short reference id and tell the user that id."""
    reference = secrets.token_hex(4).upper()
    where = "job" if context.job else "update"
    if isinstance(update, Update):
        where = f"update {update.update_id}"
    log.error("error %s while handling %s", reference, where, exc_info=context.error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    if context.member is None and update.effective_user is not None:
        # The error context is a fresh one: find the user's language again, if we still can.
        try:
            await identify(update, context)
        except Exception:
            log.warning("could not load the user for the apology %s", reference, exc_info=True)
    if update.callback_query is not None:
        # Stop the button's spinner; the handler may have answered already, which is fine.
        try:
            await update.callback_query.answer()
        except TelegramError:
            pass
    text = context.t.gettext(
        "Sorry, something went wrong on our side. Please try again in a moment. "
        "If it keeps happening, tell the school this reference: {reference}"
    ).format(reference=reference)
    try:
        await context.bot.send_message(update.effective_chat.id, text)
    except TelegramError:
        log.warning("could not send the apology for %s", reference, exc_info=True)
