"""/reports for school admins: the term's reports in the chat, each with its spreadsheet (CSV,
Excel) and chart on request (bot/services/reports.py, docs/REPORTS.md).

    /reports            the menu: enrolment, attendance, ratings, 1+N check, fees, hours
    a report's button   its summary, with CSV · Excel · Chart, ‹ Back and Cancel

Every press re-checks on the server that the presser is still an admin; files and charts are
sent to the admin who asked, as answers, never through the bulk outbox.
"""

from __future__ import annotations

import asyncio
import re
from io import BytesIO
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import N_
from bot.services import reports, sheets
from handlers.common.keyboards import grid, nav
from handlers.common.presses import edit_or_send, fields, refuse
from storage.models import Role, School, Term, utcnow

# The /reports line of the admin's command menu (bot/menus.py).
DESCRIPTION = N_("Reports: enrolment, attendance, ratings, 1+N check, files and charts")
MENU, CLOSE = "rp:m", "rp:x"
REFUSED = "reports.refused"
FOR_ADMINS = N_("Reports are for school admins.")
FOR_TEACHERS = N_(
    "Reports are for school admins. The ratings of your own courses are under /ratings."
)


def _admin(context: BotContext) -> bool:
    return context.member is not None and context.member.has(Role.ADMIN)


def _refusal(context: BotContext) -> str:
    teacher = context.member is not None and context.member.has(Role.TEACHER)
    return context.t.gettext(FOR_TEACHERS if teacher else FOR_ADMINS)


async def _school_term(context: BotContext) -> tuple[School, Term] | None:
    assert context.member is not None
    today = utcnow().astimezone(context.t.timezone).date()
    async with context.db.transaction() as session:
        return await reports.school_term(session, context.member.school_id, today)


async def show(update: Update, context: BotContext) -> None:
    """/reports: the menu of reports (admins); a polite pointer for anyone else."""
    message = update.effective_message
    assert message is not None
    if not _admin(context):
        await message.reply_text(_refusal(context))
        return
    text, markup = await _menu(context)
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _menu(context: BotContext) -> tuple[str, InlineKeyboardMarkup]:
    t = context.t
    found = await _school_term(context)
    close = [InlineKeyboardButton(t.gettext("Close"), callback_data=CLOSE)]
    if found is None:
        return (
            t.gettext("There is no term yet: import the school file first."),
            InlineKeyboardMarkup([close]),
        )
    _, term = found
    text = "\n".join(
        [
            "<b>" + t.gettext("Reports · {term}").format(term=term.name) + "</b>",
            t.gettext(
                "Choose a report: its summary comes here, with the spreadsheet (CSV or Excel) "
                "and a chart on request."
            ),
        ]
    )
    buttons = [
        InlineKeyboardButton(t.gettext(title), callback_data=f"rp:s:{key}")
        for key, title in reports.TITLES.items()
    ]
    return text, InlineKeyboardMarkup([*grid(buttons), close])


def _filename(*parts: str) -> str:
    return re.sub(r'[\\/:*?"<>|\s]+', "_", "-".join(p for p in parts if p))


async def on_press(update: Update, context: BotContext) -> None:
    """A press on the menu or on a report's buttons."""
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    if not _admin(context):
        await refuse(update, context, REFUSED, text=_refusal(context))
        return
    if query.data == CLOSE:
        await query.answer()
        await edit_or_send(query, t.gettext("Closed."))
        return
    if query.data == MENU:
        await query.answer()
        text, markup = await _menu(context)
        await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    parts = fields(query.data, "rp:", 2)
    if parts is None or parts[0] not in ("s", "c", "e", "g") or parts[1] not in reports.BUILDERS:
        await refuse(update, context, REFUSED)
        return
    action, key = parts
    found = await _school_term(context)
    if found is None:
        await refuse(update, context, REFUSED)
        return
    school, term = found
    async with context.db.transaction() as session:
        report = await reports.BUILDERS[key](session, school, term, t)
    message = query.message
    assert message is not None
    if action == "s":
        await query.answer()
        buttons = [
            InlineKeyboardButton(t.gettext("CSV"), callback_data=f"rp:c:{key}"),
            InlineKeyboardButton(t.gettext("Excel"), callback_data=f"rp:e:{key}"),
        ]
        if report.chart is not None:
            buttons.append(InlineKeyboardButton(t.gettext("Chart"), callback_data=f"rp:g:{key}"))
        markup = InlineKeyboardMarkup([*grid(buttons), nav(t, back=MENU, cancel=CLOSE)])
        await edit_or_send(query, report.summary, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    caption = f"{report.title} · {term.name}"
    if action == "g":
        if report.chart is None:
            await query.answer(t.gettext("There is nothing to draw yet."), show_alert=True)
            return
        await query.answer(t.gettext("Drawing the chart…"))
        png = await asyncio.to_thread(report.chart)
        await context.bot.send_photo(message.chat.id, BytesIO(png), caption=caption)
        return
    await query.answer(t.gettext("Preparing the file…"))
    if action == "e":
        data = await asyncio.to_thread(sheets.write_xlsx, report.sheets)
        await context.bot.send_document(
            message.chat.id,
            BytesIO(data),
            filename=_filename(report.title, term.name) + ".xlsx",
            caption=caption,
        )
        return
    for sheet in report.sheets:  # CSV holds one table: one file per sheet
        data = await asyncio.to_thread(sheets.write_csv, sheet.header, sheet.rows)
        title = sheet.title if len(report.sheets) > 1 else ""
        await context.bot.send_document(
            message.chat.id,
            BytesIO(data),
            filename=_filename(report.title, title, term.name) + ".csv",
            caption=" · ".join(p for p in (report.title, title, term.name) if p),
        )


def handlers() -> list[Any]:
    return [
        CommandHandler("reports", show, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(on_press, pattern=r"^rp:"),
    ]
