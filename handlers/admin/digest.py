"""/digest for admins: each evening's digest, sent and failed, and sending today's early.

Presses: ev:n (send today's now: the confirm step), ev:y (confirmed), ev:b (back to the
figures), ev:x (close). Every press is an admin's on the server, whatever the button said.
"""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot import wording
from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import evening
from bot.services.evening import Early, Evening
from handlers.common.keyboards import grid, nav
from handlers.common.presses import edit_or_send, refuse
from storage.models import Role, utcnow

CLOSE, BACK = "ev:x", "ev:b"
NOT_FOR_YOU = N_("This is for the school's admins.")


def _now() -> Any:
    return utcnow()


def _figures(t: Translator, found: list[Evening]) -> str:
    lines = [t.gettext("🌙 The evening digest, the last 7 days:")]
    if not found:
        lines.append(t.gettext("No evening digest was sent in the last 7 days."))
    for one in found:
        lines.append(
            t.gettext("{day}: sent {sent} · failed {failed} · waiting {waiting}").format(
                day=wording.day(t, one.date),
                sent=one.sent,
                failed=one.failed,
                waiting=one.waiting,
            )
        )
    lines.append(t.gettext("It goes out daily at the school's digest time, on days with service."))
    return "\n".join(lines)


def _markup(t: Translator) -> InlineKeyboardMarkup:
    rows = grid([InlineKeyboardButton(t.gettext("Send today's now…"), callback_data="ev:n")])
    rows.append(nav(t, cancel=CLOSE))
    return InlineKeyboardMarkup(rows)


async def _show(update: Update, context: BotContext) -> None:
    t = context.t
    today = _now().astimezone(t.timezone).date()
    async with context.db.transaction() as session:
        found = await evening.evenings(session, context.member, today)
    query = update.callback_query
    if found is None:
        if query is not None:
            await refuse(update, context, evening.REFUSED, audited=True)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(t.gettext(NOT_FOR_YOU))
        return
    if query is not None:
        await query.answer()
        await edit_or_send(query, _figures(t, found), reply_markup=_markup(t))
    elif update.effective_message is not None:
        await update.effective_message.reply_text(_figures(t, found), reply_markup=_markup(t))


async def show(update: Update, context: BotContext) -> None:
    await _show(update, context)


async def pressed(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    if context.member is None or not context.member.has(Role.ADMIN):
        await refuse(update, context, evening.REFUSED)
        return
    if query.data == CLOSE:
        await query.answer()
        await edit_or_send(query, t.gettext("Closed. Send /digest to see it again."))
        return
    if query.data == BACK:
        await _show(update, context)
        return
    if query.data == "ev:n":
        await query.answer()
        rows = grid([InlineKeyboardButton("✅ " + t.gettext("Send now"), callback_data="ev:y")])
        rows.append(nav(t, back=BACK, cancel=CLOSE))
        await edit_or_send(
            query,
            t.gettext(
                "Send today's evening digest to every family now, instead of at its time? "
                "What happens after it (a later update, a dismissal) will not be in today's "
                "digest, and it will not go out again this evening."
            ),
            reply_markup=InlineKeyboardMarkup(rows),
        )
        return
    if query.data != "ev:y":
        await refuse(update, context, evening.REFUSED)
        return
    async with context.db.transaction() as session:
        sent = await evening.send_now(session, context.runtime.i18n, context.member, _now())
    if sent.outcome is Early.REFUSED:
        await refuse(update, context, evening.REFUSED, audited=True)
        return
    context.runtime.wake_delivery()
    await query.answer()
    if sent.outcome is Early.SENT:
        assert sent.built is not None
        text = t.ngettext(
            "🌙 Today's evening digest is on its way to {count} family.",
            "🌙 Today's evening digest is on its way to {count} families.",
            sent.built.families,
        ).format(count=sent.built.families)
    elif sent.outcome is Early.ALREADY:
        text = t.gettext("Today's evening digest has gone out already; it is not sent twice.")
    else:
        text = t.gettext("There is no after-school service today, so there is no day to tell.")
    rows = [nav(t, back=BACK, cancel=CLOSE)]
    await edit_or_send(query, text, reply_markup=InlineKeyboardMarkup(rows))


def handlers() -> list[Any]:
    return [
        CommandHandler("digest", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(pressed, pattern=r"^ev:"),
    ]
