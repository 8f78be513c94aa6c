"""An admin's go-ahead for a broadcast that was due while Kehou was down: send now or cancel.

Each press is one service call (`broadcasts.release`, `broadcasts.card` or `broadcasts.stop`)
in one transaction: the service asks the guard whether the presser is an admin and checks that
the broadcast is their school's (the button may be old or forged; a refusal is audited there).
Cancelling asks first, saying what it means (`lb:q` → `lb:c`, or ‹ 返回 `lb:b` to the
question; a question sent before there was a confirm step still cancels with `lb:c`). Both
answers are compare-and-set in the service, so a press after the other admin decided is told
what actually happened.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot.context import BotContext
from bot.i18n import Translator
from bot.services import broadcasts, outbox
from bot.services.broadcasts import (
    CANCEL_LATE_LABEL,
    LATE_TEXT,
    REFUSED,
    SEND_NOW_LABEL,
    Cancelled,
    Refused,
    Release,
    Released,
    Stop,
    Summary,
)
from handlers.common.keyboards import nav
from handlers.common.presses import as_int, edit_or_send, fields, refuse
from storage.models import BroadcastStatus, utcnow

STEPS = ("s", "q", "c", "b")


def _question(t: Translator, broadcast: Summary) -> tuple[str, InlineKeyboardMarkup]:
    """The question the admins were sent, again (‹ 返回 from the cancel's confirm step)."""
    plain = " ".join(outbox.visible_text(broadcast.text).split())
    text = t.gettext(LATE_TEXT).format(
        id=broadcast.id,
        when=t.datetime(broadcast.scheduled_for, "short") if broadcast.scheduled_for else "",
        snippet=plain if len(plain) <= 200 else plain[:199] + "…",
    )
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t.gettext(SEND_NOW_LABEL), callback_data=f"lb:s:{broadcast.id}"
                ),
                InlineKeyboardButton(
                    t.gettext(CANCEL_LATE_LABEL), callback_data=f"lb:q:{broadcast.id}"
                ),
            ]
        ]
    )
    return text, markup


async def decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = fields(query.data, "lb:", 2)
    broadcast_id = as_int(parts[1]) if parts else None
    if parts is None or broadcast_id is None or parts[0] not in STEPS:
        await refuse(update, context, REFUSED)
        return
    t = context.t
    step = parts[0]
    result: Released | Cancelled | Summary | Refused
    async with context.db.transaction() as session:
        if step == "s":
            result = await broadcasts.release(
                session, context.member, broadcast_id, utcnow(), pressed=query.data
            )
        elif step == "c":
            result = await broadcasts.stop(
                session, context.member, broadcast_id, show=False, pressed=query.data
            )
        else:
            result = await broadcasts.card(
                session, context.member, broadcast_id, pressed=query.data
            )
    if isinstance(result, Refused):
        await refuse(update, context, REFUSED, audited=True)
        return
    await query.answer()
    if isinstance(result, Summary):
        if result.status is not BroadcastStatus.SCHEDULED:
            text = t.gettext("Broadcast #{id} was already sent or cancelled.")
            await edit_or_send(query, text.format(id=broadcast_id))
        elif step == "q":
            await edit_or_send(
                query,
                t.gettext(
                    "Cancel broadcast #{id}? It has not gone out yet: nobody will receive it."
                ).format(id=broadcast_id),
                reply_markup=InlineKeyboardMarkup(
                    [
                        [
                            InlineKeyboardButton(
                                t.gettext("Yes, cancel it"), callback_data=f"lb:c:{broadcast_id}"
                            )
                        ],
                        nav(t, back=f"lb:b:{broadcast_id}"),
                    ]
                ),
            )
        else:
            text, markup = _question(t, result)
            await edit_or_send(query, text, reply_markup=markup)
        return
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
