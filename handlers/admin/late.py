"""An admin's go-ahead for a broadcast that was due while Kehou was down: send now or cancel.

The role and the school are checked again on every press (the button may be old or forged);
both answers are compare-and-set in the service, so a press after the other admin decided is
told what actually happened.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot.context import BotContext
from bot.services import broadcasts
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import Role, utcnow


async def decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "lb:", 2)
    broadcast_id = as_int(parts[1]) if parts else None
    member = context.member
    if (
        parts is None
        or broadcast_id is None
        or parts[0] not in ("s", "c")
        or member is None
        or not member.has(Role.ADMIN)
    ):
        await refuse(update, context, "broadcast.refused")
        return
    t = context.t
    async with context.db.transaction() as session:
        if await broadcasts.get(session, member.school_id, broadcast_id) is None:
            found = False
        elif parts[0] == "s":
            found = True
            count = await broadcasts.send_held(
                session, member.school_id, broadcast_id, member.user_id, utcnow()
            )
        else:
            found = True
            stopped = await broadcasts.cancel(
                session, member.school_id, broadcast_id, member.user_id
            )
    if not found:
        await refuse(update, context, "broadcast.refused")
        return
    await query.answer()
    if parts[0] == "s":
        if count is None:
            text = t.gettext("Broadcast #{id} was already sent or cancelled.")
        else:
            text = t.ngettext(
                "Broadcast #{id} is going out now to {n} recipient.",
                "Broadcast #{id} is going out now to {n} recipients.",
                count,
            )
        await edit_or_send(query, text.format(id=broadcast_id, n=count))
        return
    if stopped is not None and stopped.outcome is broadcasts.Stop.CANCELLED:
        text = t.gettext("Broadcast #{id} cancelled before it started. Nothing was sent.")
    elif stopped is not None and stopped.outcome is broadcasts.Stop.STOPPED:
        text = t.ngettext(
            "Broadcast #{id} had already started: {n} message was sent and stays delivered; "
            "the rest will not be sent.",
            "Broadcast #{id} had already started: {n} messages were sent and stay delivered; "
            "the rest will not be sent.",
            stopped.sent,
        )
    else:
        text = t.gettext("Broadcast #{id} has already finished.")
    await edit_or_send(query, text.format(id=broadcast_id, n=stopped.sent if stopped else 0))


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    return [CallbackQueryHandler(decide, pattern=r"^lb:")]
