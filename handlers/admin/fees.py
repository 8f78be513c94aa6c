"""/fees for school admins: the term's fees at a glance, publishing standards, issuing bills,
recording money, importing a payment file and exporting reports. Guardians get their bills
(handlers.parent.fees).

    /fees                         the term: standards, bills, what is paid and still due
    /fees pay <学号> <amount>      record a payment (a confirm step; the bill must not change
                                  between the screen and the press)
    /fees exempt <学号> <amount> <reason>   a hardship reduction (减免), audited
    /fees refund <学号> <amount>   money paid back to the family
    a .csv or .xlsx file sent with the caption /fees: the payment system's export, matched by
    student number and amount (bot/services/payments.py)

Every press and every command re-checks on the server that the sender is an admin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from io import BytesIO
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.i18n import Translator
from bot.services import billing, catalogue, fee_reports, fees, payments, sheets
from bot.services.catalogue import TermInfo
from handlers.common.keyboards import grid, nav
from handlers.common.presses import edit_or_send, fields, ints, refuse
from handlers.parent import fees as parent_fees
from storage.models import FeeStandard, Role, utcnow

DUE_DAYS = 14  # a bill issued today is due in two weeks unless the admin types a date
CLOSE = "fe:x"


def _admin(context: BotContext) -> bool:
    return context.member is not None and context.member.has(Role.ADMIN)


async def _term(context: BotContext) -> TermInfo | None:
    assert context.member is not None
    today = utcnow().astimezone(context.t.timezone).date()
    async with context.db.transaction() as session:
        found = await catalogue.of(session, context.member.school_id)
    return found.current_term(today)


async def show(update: Update, context: BotContext) -> None:
    """/fees: admins get the term's fees; guardians their bills; with words, an action."""
    message = update.effective_message
    assert message is not None
    if not _admin(context):
        await parent_fees.show(update, context)
        return
    words = list(context.args or [])
    if words and words[0] in ("pay", "exempt", "refund"):
        await _money(update, context, words)
        return
    text, markup = await _overview(context)
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _overview(context: BotContext) -> tuple[str, InlineKeyboardMarkup | None]:
    t = context.t
    assert context.member is not None
    term = await _term(context)
    if term is None:
        return t.gettext("There is no term yet: import the school file first."), None
    async with context.db.transaction() as session:
        standards = await fees.current(session, context.member.school_id, term.id)
        totals = await billing.term_totals(session, context.member.school_id, term.id)
    pending = [s for s in standards if s.disclosed_at is None]
    lines = [
        "<b>" + html.escape(t.gettext("Fees · {term}").format(term=term.name)) + "</b>",
        t.ngettext(
            "{n} fee standard disclosed",
            "{n} fee standards disclosed",
            len(standards) - len(pending),
        ).format(n=len(standards) - len(pending)),
    ]
    if pending:
        lines.append(
            t.ngettext(
                "{n} standard not disclosed yet: it may not be charged",
                "{n} standards not disclosed yet: they may not be charged",
                len(pending),
            ).format(n=len(pending))
        )
    lines.append(
        t.ngettext("{n} bill", "{n} bills", totals.bills).format(n=totals.bills)
        + " · "
        + t.gettext("charged {charged}, paid {paid}, still due {due}").format(
            charged=t.money(totals.charged_fen),
            paid=t.money(totals.paid_fen),
            due=t.money(totals.outstanding_fen),
        )
    )
    lines.append(
        t.gettext(
            "To record money: /fees pay 学号 amount · /fees exempt 学号 amount reason · "
            "/fees refund 学号 amount. To import the payment system's export, send the .csv or "
            ".xlsx file with the caption /fees."
        )
    )
    buttons = []
    if pending:
        buttons.append(InlineKeyboardButton(t.gettext("Disclose…"), callback_data="fe:pp"))
    buttons.append(InlineKeyboardButton(t.gettext("Issue bills…"), callback_data="fe:ip"))
    if totals.bills:
        buttons.append(InlineKeyboardButton(t.gettext("Reports"), callback_data="fe:r"))
    rows = [*grid(buttons), [InlineKeyboardButton(t.gettext("Close"), callback_data=CLOSE)]]
    return "\n".join(lines), InlineKeyboardMarkup(rows)


async def on_press(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    t = context.t
    if not _admin(context) or context.member is None:
        await refuse(update, context, "fees.refused")
        return
    action = query.data[3:].split(":", 1)[0]
    term = await _term(context)
    if term is None:
        await refuse(update, context, "fees.refused")
        return
    school_id = context.member.school_id
    user_id = context.member.user_id
    today = utcnow().astimezone(t.timezone).date()
    back = nav(t, back="fe:o", cancel=CLOSE)
    if action == "x":
        await query.answer()
        await edit_or_send(query, t.gettext("Closed."))
        return
    if action == "o":
        await query.answer()
        text, markup = await _overview(context)
        await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    if action == "pp":
        await query.answer()
        async with context.db.transaction() as session:
            pending = await fees.pending(session, school_id, term.id)
        if not pending:
            text, markup = await _overview(context)
            await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)
            return
        # The press names the standards shown (callback data holds 64 bytes): whole ids only.
        shown: list[FeeStandard] = []
        for standard in pending:
            if len(",".join(str(x.id) for x in [*shown, standard])) > 50:
                break
            shown.append(standard)
        items = [
            f"• {html.escape(x.name)}: {t.money(x.amount_fen)} "
            f"{t.gettext(parent_fees.UNITS[x.unit.value])}"
            for x in shown
        ]
        text = "\n".join(
            [
                t.gettext(
                    "Disclose these standards today? Once disclosed they are public on the "
                    "school's page and never edited; a change is a new version."
                ),
                *items,
            ]
        )
        ids = ",".join(str(x.id) for x in shown)
        markup = InlineKeyboardMarkup(
            [[InlineKeyboardButton(t.gettext("Disclose"), callback_data=f"fe:py:{ids}")], back]
        )
        await edit_or_send(query, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        return
    if action == "py":
        parts = fields(query.data, "fe:py:", 1)
        wanted = [int(x) for x in parts[0].split(",") if x.isdigit()] if parts else []
        async with context.db.transaction() as session:
            published = await fees.publish(
                session, school_id, wanted, user_id=user_id, today=today
            )
        await query.answer()
        count = sum(1 for v in published.values() if v is fees.Published.DONE)
        text = t.ngettext(
            "{n} standard disclosed today.", "{n} standards disclosed today.", count
        ).format(n=count)
        await edit_or_send(query, text, reply_markup=InlineKeyboardMarkup([back]))
        return
    if action == "ip":
        await query.answer()
        due = today + dt.timedelta(days=DUE_DAYS)
        text = t.gettext(
            "Issue the term's bills now, due on {day}? Every child is billed only for the "
            "disclosed fees of the courses they are in; families are told at once. Issuing "
            "again later bills only what is new."
        ).format(day=t.date(due))
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        t.gettext("Issue bills"), callback_data=f"fe:iy:{due.toordinal()}"
                    )
                ],
                back,
            ]
        )
        await edit_or_send(query, text, reply_markup=markup)
        return
    if action == "iy":
        numbers = ints(query.data, "fe:iy:", 1)
        if numbers is None or numbers[0] < today.toordinal():
            await refuse(update, context, "fees.refused")
            return
        async with context.db.transaction() as session:
            report = await billing.issue(
                session,
                school_id,
                term.id,
                due_on=dt.date.fromordinal(numbers[0]),
                user_id=user_id,
            )
        context.runtime.wake_delivery()
        await query.answer()
        lines = [
            t.ngettext("{n} new bill", "{n} new bills", report.bills_new).format(
                n=report.bills_new
            ),
            t.ngettext("{n} line", "{n} lines", report.lines).format(n=report.lines)
            + " · "
            + t.money(report.total_fen),
        ]
        if report.refused:
            lines.append(
                t.ngettext(
                    "{n} line not billed: its fee was disclosed after the child signed up, "
                    "or is not theirs to pay.",
                    "{n} lines not billed: their fee was disclosed after the child signed up, "
                    "or is not theirs to pay.",
                    len(report.refused),
                ).format(n=len(report.refused))
            )
        await edit_or_send(query, "\n".join(lines), reply_markup=InlineKeyboardMarkup([back]))
        return
    if action == "r":
        await query.answer()
        async with context.db.transaction() as session:
            built = await fee_reports.build(session, t, school_id, term.id)
        xlsx, csv_bytes = await asyncio.gather(
            asyncio.to_thread(sheets.write_xlsx, built),
            asyncio.to_thread(sheets.write_csv, built[0].header, built[0].rows),
        )
        message = query.message
        assert message is not None
        chat_id = message.chat.id
        name = t.gettext("fees")
        await context.bot.send_document(
            chat_id, BytesIO(xlsx), filename=f"{name}-{term.name}.xlsx"
        )
        await context.bot.send_document(
            chat_id, BytesIO(csv_bytes), filename=f"{name}-{term.name}.csv"
        )
        return
    if action == "p":
        numbers = ints(query.data, "fe:p:", 3)
        if numbers is None:
            await refuse(update, context, "fees.refused")
            return
        bill_id, amount, version = numbers
        async with context.db.transaction() as session:
            done = await billing.record_payment(
                session, bill_id, amount, user_id=user_id, expected_version=version
            )
        await query.answer()
        if done.result is billing.Recorded.DONE:
            context.runtime.wake_delivery()
        await edit_or_send(query, _recorded(t, done), reply_markup=InlineKeyboardMarkup([back]))
        return
    await refuse(update, context, "fees.refused")


def _recorded(t: Translator, done: billing.Outcome) -> str:
    if done.result is billing.Recorded.DONE:
        return t.gettext("Recorded: {amount}. Still due on this bill: {left}.").format(
            amount=t.money(done.amount_fen), left=t.money(max(done.balance_fen, 0))
        )
    if done.result is billing.Recorded.STALE:
        return t.gettext("The bill changed since this screen was shown: nothing was recorded.")
    if done.result is billing.Recorded.TOO_MUCH:
        return t.gettext(
            "That is more than is due on this bill ({left}): nothing was recorded."
        ).format(left=t.money(abs(done.balance_fen)))
    if done.result is billing.Recorded.DUPLICATE:
        return t.gettext("This payment is on the bill already.")
    return t.gettext("Nothing was recorded.")


async def _money(update: Update, context: BotContext, words: list[str]) -> None:
    message = update.effective_message
    assert message is not None and context.member is not None
    t = context.t
    usage = t.gettext(
        "Write it as /fees pay 学号 amount, /fees exempt 学号 amount reason, or /fees refund "
        "学号 amount — for example /fees pay 0301 280."
    )
    if len(words) < 3 or (words[0] == "exempt" and len(words) < 4):
        await message.reply_text(usage)
        return
    try:
        amount = sheets.parse_amount(words[2])
    except ValueError:
        await message.reply_text(usage)
        return
    term = await _term(context)
    async with context.db.transaction() as session:
        found = (
            await billing.bill_of_student(session, context.member.school_id, term.id, words[1])
            if term is not None
            else None
        )
        view = await billing.view(session, found[0]) if found else None
    if found is None or view is None:
        await message.reply_text(
            t.gettext("No bill this term for student number {number}.").format(number=words[1])
        )
        return
    bill_id, child = found
    if words[0] == "pay":
        text = t.gettext("Record a payment of {amount} for {child}? Still due: {left}.").format(
            amount=t.money(amount), child=html.escape(child), left=t.money(view.balance_fen)
        )
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        t.gettext("Record payment"),
                        callback_data=f"fe:p:{bill_id}:{amount}:{view.version}",
                    )
                ],
                nav(t, cancel=CLOSE),
            ]
        )
        await message.reply_text(text, reply_markup=markup)
        return
    async with context.db.transaction() as session:
        if words[0] == "exempt":
            done = await billing.exempt(
                session,
                bill_id,
                amount,
                user_id=context.member.user_id,
                reason=" ".join(words[3:]),
            )
        else:
            done = await billing.record_refund(
                session, bill_id, amount, user_id=context.member.user_id
            )
    if done.result is billing.Recorded.DONE:
        context.runtime.wake_delivery()
    await message.reply_text(
        html.escape(child) + " · " + _recorded(t, done), parse_mode=ParseMode.HTML
    )


async def on_file(update: Update, context: BotContext) -> None:
    """A payment file sent with the caption /fees."""
    message = update.effective_message
    assert message is not None and message.document is not None
    t = context.t
    if not _admin(context) or context.member is None:
        await message.reply_text(t.gettext("Payment files are for school admins."))
        return
    term = await _term(context)
    if term is None:
        await message.reply_text(t.gettext("There is no term yet: import the school file first."))
        return
    data = bytes(await (await message.document.get_file()).download_as_bytearray())
    try:
        table = await asyncio.to_thread(
            sheets.read_table,
            data,
            message.document.file_name or "payments.csv",
            header_with=(sheets.STUDENT_NO, sheets.AMOUNT),
        )
        rows = payments.parse(table)
    except sheets.SheetError as exc:
        await message.reply_text(
            t.gettext("Nothing was imported. {problem}").format(
                problem=t.gettext(exc.msgid).format(**exc.params)
            )
        )
        return
    async with context.db.transaction() as session:
        report = await payments.record(
            session, context.member.school_id, term.id, rows, user_id=context.member.user_id
        )
    context.runtime.wake_delivery()
    lines = [
        t.gettext(
            "Payments imported: {paid} paid in full, {partial} in part, {total} in all."
        ).format(
            paid=report.count(payments.Match.PAID),
            partial=report.count(payments.Match.PARTIAL),
            total=t.money(report.recorded_fen),
        )
    ]
    if report.count(payments.Match.DUPLICATE):
        lines.append(
            t.ngettext(
                "{n} row was imported before and is skipped.",
                "{n} rows were imported before and are skipped.",
                report.count(payments.Match.DUPLICATE),
            ).format(n=report.count(payments.Match.DUPLICATE))
        )
    reasons = {
        payments.Match.NO_STUDENT: t.gettext("no such student number"),
        payments.Match.NO_BILL: t.gettext("no bill this term"),
        payments.Match.NOTHING_DUE: t.gettext("nothing is due"),
        payments.Match.TOO_MUCH: t.gettext("more than is due"),
    }
    unmatched = report.unmatched
    if unmatched:
        lines.append(
            t.ngettext(
                "{n} row not matched, left for you:",
                "{n} rows not matched, left for you:",
                len(unmatched),
            ).format(n=len(unmatched))
        )
        lines += [
            t.gettext("Row {row}: {number} {amount} — {why}").format(
                row=line.row,
                number=html.escape(line.student_no),
                amount=t.money(line.amount_fen),
                why=reasons[line.match],
            )
            for line in unmatched[:30]
        ]
    await message.reply_text("\n".join(lines))


def handlers() -> list[Any]:
    private = filters.ChatType.PRIVATE
    return [
        CommandHandler("fees", show, filters=private),
        CallbackQueryHandler(on_press, pattern=r"^fe:"),
        MessageHandler(
            private & filters.Document.ALL & filters.CaptionRegex(r"^\s*/fees\b"), on_file
        ),
    ]
