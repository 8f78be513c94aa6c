"""An admin's go-ahead for a broadcast that was due while Kehou was down: send now or cancel.

Each press is one service call (`broadcasts.release` or `broadcasts.stop`) in one transaction:
the service asks the guard whether the presser is an admin and checks that the broadcast is
their school's (the button may be old or forged; a refusal is audited there). Both answers are
compare-and-set in the service, so a press after the other admin decided is told what actually
happened.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot.context import BotContext
from bot.services import broadcasts
from bot.services.broadcasts import REFUSED, Cancelled, Refused, Release, Released, Stop
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import utcnow


async def decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "lb:", 2)
    broadcast_id = as_int(parts[1]) if parts else None
    if parts is None or broadcast_id is None or parts[0] not in ("s", "c"):
        await refuse(update, context, REFUSED)
        return
    t = context.t
    result: Released | Cancelled | Refused
    async with context.db.transaction() as session:
        if parts[0] == "s":
            result = await broadcasts.release(
                session, context.member, broadcast_id, utcnow(), pressed=query.data
            )
        else:
            result = await broadcasts.stop(
                session, context.member, broadcast_id, pressed=query.data
            )
    if isinstance(result, Refused):
        await refuse(update, context, REFUSED, audited=True)
        return
    await query.answer()
    if isinstance(result, Released):
        if result.outcome is Release.ALREADY:
            text = t.gettext("Broadcast #{id} was already sent or cancelled.")
        else:
            context.runtime.wake_delivery()  # its rows are due now, as after "Send now"
            text = t.ngettext(
                "Broadcast #{id} is going out now to {n} recipient.",
                "Broadcast #{id} is going out now to {n} recipients.",
                result.recipients,
            )
        await edit_or_send(query, text.format(id=broadcast_id, n=result.recipients))
        return
    if result.outcome is Stop.CANCELLED:
        text = t.gettext("Broadcast #{id} cancelled before it started. Nothing was sent.")
    elif result.outcome is Stop.STOPPED:
        text = t.ngettext(
            "Broadcast #{id} had already started: {n} message was sent and stays delivered; "
            "the rest will not be sent.",
            "Broadcast #{id} had already started: {n} messages were sent and stay delivered; "
            "the rest will not be sent.",
            result.sent,
        )
    else:
        text = t.gettext("Broadcast #{id} has already finished.")
    await edit_or_send(query, text.format(id=broadcast_id, n=result.sent))


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    return [CallbackQueryHandler(decide, pattern=r"^lb:")]
