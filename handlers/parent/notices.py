"""/notices: how a guardian gets the school's messages, on one phone-sized screen.

- the school's non-urgent notices: each at once, or one daily digest;
- the teachers' daily updates: at once, in the evening digest, or not at all;
- whether to be told how their child left school.

Absence alerts and safety notices always come at once; the screen says so.

Callback data (never trusted; every press re-checks on the server that the presser is a
guardian): ``nt:<instant|digest>`` notices · ``nt:u:<instant|digest|muted>`` updates ·
``nt:d:<1|0>`` the dismissal message on or off (the state the press asks for, so a double tap
changes nothing).
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import notices
from bot.services.notices import Choices
from handlers.common.keyboards import grid
from handlers.common.presses import edit_or_send, fields, refuse
from storage.models import NoticeMode, UpdateMode

UPDATE_LABELS = {
    UpdateMode.INSTANT: N_("Updates: at once"),
    UpdateMode.DIGEST: N_("Updates: evening digest"),
    UpdateMode.MUTED: N_("Updates: off"),
}
UPDATE_NOW = {
    UpdateMode.INSTANT: N_("Right now: as soon as the teacher posts them."),
    UpdateMode.DIGEST: N_("Right now: in the evening digest."),
    UpdateMode.MUTED: N_("Right now: not received."),
}


def _text(t: Translator, chosen: Choices) -> str:
    current = (
        t.gettext("Right now: each message as it comes.")
        if chosen.notices is NoticeMode.INSTANT
        else t.gettext("Right now: one daily digest.")
    )
    dismissal = (
        t.gettext("Right now: you are told.")
        if chosen.dismissal
        else t.gettext("Right now: you are not told.")
    )
    return "\n".join(
        [
            t.gettext(
                "How would you like to get the school's non-urgent notices? "
                "Urgent ones, such as an absence alert or a safety notice, always come at once."
            ),
            current,
            "",
            t.gettext("<b>Teachers' daily updates</b> (what the class did, with photos)"),
            t.gettext(UPDATE_NOW[chosen.updates]),
            t.gettext("Absence alerts come at once even when updates are off."),
            "",
            t.gettext("<b>How my child left school</b> (e.g. “17:52 collected by a parent”)"),
            dismissal,
        ]
    )


def _markup(t: Translator, chosen: Choices) -> InlineKeyboardMarkup:
    def mark(on: bool) -> str:
        return "● " if on else "○ "

    def button(on: bool, label: str, data: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(mark(on) + label, callback_data=data)

    rows = [
        [button(chosen.notices is NoticeMode.INSTANT, t.gettext("At once"), "nt:instant")],
        [button(chosen.notices is NoticeMode.DIGEST, t.gettext("One daily digest"), "nt:digest")],
    ]
    rows += grid(
        [
            button(chosen.updates is mode, t.gettext(label), f"nt:u:{mode.value}")
            for mode, label in UPDATE_LABELS.items()
        ]
    )
    rows.append(
        [
            button(
                chosen.dismissal,
                t.gettext("Tell me how my child left"),
                f"nt:d:{int(not chosen.dismissal)}",
            )
        ]
    )
    return InlineKeyboardMarkup(rows)


async def show(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    async with context.db.transaction() as session:
        chosen = await notices.choices_of(session, context.member)
    if chosen is None:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    await message.reply_text(
        _text(t, chosen), reply_markup=_markup(t, chosen), parse_mode=ParseMode.HTML
    )


async def choose(update: Update, context: BotContext) -> None:
    """Save the parent's choice (re-checking that they are a guardian) and show it."""
    query = update.callback_query
    assert query is not None
    t = context.t
    one = fields(query.data, "nt:", 1)
    two = fields(query.data, "nt:", 2)
    notice = next((m for m in NoticeMode if one == [m.value]), None)
    updates = next((m for m in UpdateMode if two == ["u", m.value]), None)
    dismissal = {"1": True, "0": False}.get(two[1]) if two and two[0] == "d" else None
    if notice is None and updates is None and dismissal is None:
        await refuse(update, context, notices.REFUSED)
        return
    async with context.db.transaction() as session:
        if notice is not None:
            chosen = await notices.choose(session, context.member, notice, pressed=query.data)
        elif updates is not None:
            chosen = await notices.choose_updates(
                session, context.member, updates, pressed=query.data
            )
        else:
            assert dismissal is not None
            chosen = await notices.choose_dismissal(
                session, context.member, dismissal, pressed=query.data
            )
    if chosen is None:
        await refuse(update, context, notices.REFUSED, audited=True)
        return
    await query.answer(t.gettext("Saved."))
    await edit_or_send(
        query, _text(t, chosen), reply_markup=_markup(t, chosen), parse_mode=ParseMode.HTML
    )


def handlers() -> list[CommandHandler | CallbackQueryHandler]:  # type: ignore[type-arg]
    return [
        CommandHandler("notices", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(choose, pattern=r"^nt:"),
    ]
