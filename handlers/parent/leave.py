"""/leave: take a child out of a period, a day or several days, or collect them early.

Steps: the child (if several) → what (today's or tomorrow's period 1, period 2 or whole day,
other dates, an early pick-up) → an optional reason → recorded, with a button to take it back
until the school's cut-off. The draft lives in `user_data`; every press re-checks that the
presser is the child's guardian.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import warnings
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
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
from bot.services import guard, leaves
from bot.services.guard import Child
from bot.services.leaves import LeaveRefusal
from handlers.common.cancel import cancel
from handlers.common.presses import edit_markup, ints, refuse
from storage.models import Leave, Role, utcnow

WHAT, DATES, PICKUP, REASON = range(4)
DRAFT = "pending_leave"
REASONS = {"ill": N_("Ill"), "family": N_("Family matter"), "other": N_("Other")}
REFUSALS = {
    LeaveRefusal.PAST: N_("That day has passed."),
    LeaveRefusal.NO_SESSION: N_("Your child has no after-school session then."),
    LeaveRefusal.TOO_LATE: N_(
        "It is too late to change this session online: the school needs to know {minutes} "
        "minutes before it starts. Please tell the teacher directly."
    ),
    LeaveRefusal.ALREADY: N_("This is already recorded."),
    LeaveRefusal.BAD_TIME: N_("The pick-up time must be during the session."),
    LeaveRefusal.TOO_LONG: N_("Please choose at most 31 days at a time."),
}
DATE = r"(?:(\d{4})-)?(\d{1,2})-(\d{1,2})"
RANGE = re.compile(rf"^\s*{DATE}\s*(?:(?:to|至|到|-|~|—)\s*{DATE})?\s*$")
CLOCK = re.compile(r"^\s*(\d{1,2})[:：](\d{2})\s*$")


def _today(t: Translator) -> dt.date:
    return utcnow().astimezone(t.timezone).date()


async def begin(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    t = context.t
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return ConversationHandler.END
    async with context.db.transaction() as session:
        found = await leaves.overview(session, context.member, _today(t))
    assert found is not None  # no child was named, so none can be refused
    if found.child is not None:
        return await _ask_what(update, context, found, new_message=True)
    await message.reply_text(
        t.gettext("Which child?"),
        reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton(c.name, callback_data=f"lv:k:{c.id}")] for c in found.children]
        ),
    )
    return WHAT


async def _ask_what(
    update: Update, context: BotContext, found: leaves.Overview, *, new_message: bool = False
) -> int:
    t = context.t
    child = found.child
    assert context.user_data is not None and child is not None
    context.user_data[DRAFT] = {"student": child.id}
    rows = [
        [
            InlineKeyboardButton(t.gettext("Today, period 1"), callback_data="lv:w:0:1"),
            InlineKeyboardButton(t.gettext("Today, period 2"), callback_data="lv:w:0:2"),
        ],
        [InlineKeyboardButton(t.gettext("Today, the whole day"), callback_data="lv:w:0:0")],
        [
            InlineKeyboardButton(t.gettext("Tomorrow, period 1"), callback_data="lv:w:1:1"),
            InlineKeyboardButton(t.gettext("Tomorrow, period 2"), callback_data="lv:w:1:2"),
        ],
        [InlineKeyboardButton(t.gettext("Tomorrow, the whole day"), callback_data="lv:w:1:0")],
        [InlineKeyboardButton(t.gettext("Other days…"), callback_data="lv:d")],
        [InlineKeyboardButton(t.gettext("Pick up early today…"), callback_data="lv:p")],
    ]
    upcoming = found.upcoming
    text = t.gettext("When will {child} not take part?").format(child=html.escape(child.name))
    if upcoming:
        text += (
            "\n\n"
            + t.gettext("Already recorded:")
            + "\n"
            + "\n".join(describe(t, leave) for leave in upcoming)
        )
        rows += [
            [
                InlineKeyboardButton(
                    t.gettext("Take back: {leave}").format(leave=describe(t, x)),
                    callback_data=f"lv:x:{x.id}",
                )
            ]
            for x in upcoming[:5]
        ]
    markup = InlineKeyboardMarkup(rows)
    if new_message or update.callback_query is None:
        await update.effective_message.reply_text(  # type: ignore[union-attr]
            text, reply_markup=markup, parse_mode=ParseMode.HTML
        )
    else:
        await update.callback_query.edit_message_text(
            text, reply_markup=markup, parse_mode=ParseMode.HTML
        )
    return WHAT


def describe(t: Translator, leave: Leave) -> str:
    day = t.date(leave.date, "medium")
    if leave.pickup_at is not None:
        return t.gettext("{day}: picked up at {time}").format(
            day=day, time=t.time(leave.pickup_at)
        )
    if leave.period is None:
        return t.gettext("{day}: the whole day").format(day=day)
    return t.gettext("{day}: period {period}").format(day=day, period=leave.period)


async def _child(update: Update, context: BotContext, student_id: int) -> Child | None:
    """The child, if the presser is one of their guardians; else the press is refused."""
    query = update.callback_query
    async with context.db.transaction() as session:
        child = await guard.child(
            session,
            context.member,
            student_id,
            action=leaves.REFUSED,
            pressed=query.data if query else None,
        )
    if child is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
    return child


async def choose_child(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    values = ints(query.data, "lv:k:", 1)
    if values is None:
        await refuse(update, context, leaves.REFUSED)
        return ConversationHandler.END
    async with context.db.transaction() as session:
        found = await leaves.overview(
            session, context.member, _today(context.t), values[0], pressed=query.data
        )
    if found is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return ConversationHandler.END
    await query.answer()
    return await _ask_what(update, context, found)


async def choose_what(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict):
        await refuse(update, context, leaves.REFUSED)
        return ConversationHandler.END
    if await _child(update, context, draft["student"]) is None:
        return ConversationHandler.END
    await query.answer()
    if query.data == "lv:d":
        await query.edit_message_text(
            t.gettext(
                "Which days? Write a date like 12-08, or a range like 12-08 to 12-12. "
                "Days without a session are skipped."
            )
        )
        return DATES
    if query.data == "lv:p":
        await query.edit_message_text(
            t.gettext("At what time will you collect your child today? For example 16:50.")
        )
        return PICKUP
    parts = query.data.split(":")
    if len(parts) != 4 or parts[2] not in ("0", "1") or parts[3] not in ("0", "1", "2"):
        await refuse(update, context, "leave.refused")
        return WHAT
    day = _today(t) + dt.timedelta(days=int(parts[2]))
    draft.update(first=day.isoformat(), last=day.isoformat(), period=int(parts[3]) or None)
    return await _ask_reason(update, context)


async def receive_dates(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None and message.text is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict):
        return ConversationHandler.END
    days = parse_days(message.text, _today(t))
    if days is None:
        await message.reply_text(
            t.gettext("I could not read that. Please write it like 12-08 or 12-08 to 12-12.")
        )
        return DATES
    draft.update(first=days[0].isoformat(), last=days[1].isoformat(), period=None)
    return await _ask_reason(update, context)


def parse_days(text: str, today: dt.date) -> tuple[dt.date, dt.date] | None:
    """`12-08`, `2026-12-08` or a range of them; a date without a year is the next one to come."""
    match = RANGE.match(text)
    if match is None:
        return None

    def one(year: str | None, month: str, day: str) -> dt.date:
        found = dt.date(int(year) if year else today.year, int(month), int(day))
        if year is None and found < today - dt.timedelta(days=180):
            found = found.replace(year=found.year + 1)
        return found

    try:
        first = one(*match.groups()[:3])
        last = one(*match.groups()[3:]) if match.group(5) else first
    except ValueError:
        return None
    return (first, last) if first <= last else (last, first)


async def receive_pickup(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None and message.text is not None
    t = context.t
    draft = (context.user_data or {}).get(DRAFT)
    if not isinstance(draft, dict):
        return ConversationHandler.END
    match = CLOCK.match(message.text)
    try:
        clock = dt.time(int(match.group(1)), int(match.group(2))) if match else None
    except ValueError:
        clock = None
    if clock is None:
        await message.reply_text(t.gettext("Please write a time like 16:50."))
        return PICKUP
    today = _today(t).isoformat()
    async with context.db.transaction() as session:
        period = await leaves.pickup_period(
            session, context.member, draft["student"], _today(t), clock
        )
    if period is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return ConversationHandler.END
    if period is LeaveRefusal.BAD_TIME:
        await message.reply_text(t.gettext(REFUSALS[LeaveRefusal.BAD_TIME]))
        return PICKUP
    draft.update(first=today, last=today, period=period, pickup=clock.strftime("%H:%M"))
    return await _ask_reason(update, context)


async def _ask_reason(update: Update, context: BotContext) -> int:
    t = context.t
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t.gettext(label), callback_data=f"lv:r:{code}")
                for code, label in REASONS.items()
            ],
            [InlineKeyboardButton(t.gettext("No reason"), callback_data="lv:r:-")],
        ]
    )
    text = t.gettext("A reason for the teacher? Choose one, write your own, or skip.")
    if update.callback_query is not None:
        await update.callback_query.edit_message_text(text, reply_markup=markup)
    else:
        await update.effective_message.reply_text(text, reply_markup=markup)  # type: ignore[union-attr]
    return REASON


async def reason_button(update: Update, context: BotContext) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    code = query.data.removeprefix("lv:r:")
    await query.answer()
    reason = context.t.gettext(REASONS[code]) if code in REASONS else None
    return await _record(update, context, reason)


async def reason_text(update: Update, context: BotContext) -> int:
    assert update.effective_message is not None
    return await _record(update, context, update.effective_message.text)


async def _record(update: Update, context: BotContext, reason: str | None) -> int:
    t = context.t
    assert context.user_data is not None
    draft = context.user_data.pop(DRAFT, None)
    if not isinstance(draft, dict) or "first" not in draft:
        return ConversationHandler.END
    request = leaves.Request(
        first=dt.date.fromisoformat(draft["first"]),
        last=dt.date.fromisoformat(draft["last"]),
        period=draft.get("period"),
        pickup_at=dt.time.fromisoformat(draft["pickup"]) if draft.get("pickup") else None,
        reason=reason,
    )
    async with context.db.transaction() as session:
        filed = await leaves.file(session, context.member, draft["student"], request)
    if filed is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return ConversationHandler.END
    if filed.refusal is not None:
        text = t.gettext(REFUSALS[filed.refusal]).format(minutes=filed.cutoff_minutes)
        markup = None
    else:
        text = (
            t.gettext("Recorded for {child}; the teacher will see it:").format(
                child=html.escape(filed.child.name)
            )
            + "\n"
            + "\n".join(describe(t, x) for x in filed.made)
        )
        if reason:
            text += "\n" + t.gettext("Reason: {reason}").format(reason=html.escape(reason))
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        t.gettext("Take back: {leave}").format(leave=describe(t, x)),
                        callback_data=f"lv:x:{x.id}",
                    )
                ]
                for x in filed.made[:5]
            ]
        )
    if update.callback_query is not None:
        await update.callback_query.edit_message_text(
            text, reply_markup=markup, parse_mode=ParseMode.HTML
        )
    elif update.effective_message is not None:
        await update.effective_message.reply_text(
            text, reply_markup=markup, parse_mode=ParseMode.HTML
        )
    return ConversationHandler.END


async def take_back(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    values = ints(query.data, "lv:x:", 1)
    if values is None:
        await refuse(update, context, leaves.REFUSED)
        return
    async with context.db.transaction() as session:
        taken = await leaves.take_back(session, context.member, values[0], pressed=query.data)
    if taken is None:
        await refuse(update, context, leaves.REFUSED, audited=True)
        return
    result, minutes = taken
    if result is True:
        await query.answer(
            t.gettext("Taken back: your child takes part as usual."), show_alert=True
        )
        await edit_markup(query, None)
    elif result is False:
        await query.answer(t.gettext("This was already taken back."), show_alert=True)
    else:
        await query.answer(t.gettext(REFUSALS[result]).format(minutes=minutes), show_alert=True)


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    text = private & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[CommandHandler("leave", begin, filters=private)],
            states={
                WHAT: [
                    CallbackQueryHandler(choose_child, pattern=r"^lv:k:"),
                    CallbackQueryHandler(choose_what, pattern=r"^lv:(w:|d$|p$)"),
                ],
                DATES: [MessageHandler(text, receive_dates)],
                PICKUP: [MessageHandler(text, receive_pickup)],
                REASON: [
                    CallbackQueryHandler(reason_button, pattern=r"^lv:r:"),
                    MessageHandler(text, reason_text),
                ],
            },
            fallbacks=[
                CommandHandler("cancel", cancel),
                CommandHandler("leave", begin, filters=private),
            ],
            name="leave",
            persistent=True,
            allow_reentry=True,
        )
    return [conversation, CallbackQueryHandler(take_back, pattern=r"^lv:x:")]
