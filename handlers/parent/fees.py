"""/fees for guardians: each child's term bill line by line, what is paid and what is still to
pay, what came back, and the school's public disclosure page (bot/web). Read only: payments are
recorded by the school."""

from __future__ import annotations

import html

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode

from bot.context import BotContext
from bot.i18n import N_, Translator
from bot.services import billing
from bot.services.billing import BillView, FamilyBills
from bot.web import disclosure_url
from storage.models import Role

UNITS = {
    "term": N_("per term"),
    "month": N_("per month"),
    "session": N_("per session"),
    "day": N_("per day"),
}


def bill_text(t: Translator, bill: BillView) -> list[str]:
    lines = [
        "<b>"
        + html.escape(t.gettext("{child} · {term}").format(child=bill.student, term=bill.term))
        + "</b>"
    ]
    for line in bill.lines:
        item = html.escape(line.name + (f" · {line.course}" if line.course else ""))
        lines.append(
            t.gettext("• {item}: {unit_price} {unit} × {quantity} = {amount}").format(
                item=item,
                unit_price=t.money(line.unit_fen),
                unit=t.gettext(UNITS[line.unit]),
                quantity=line.quantity,
                amount=t.money(line.amount_fen),
            )
        )
        if line.disclosed_on is not None:
            lines.append(
                "  " + t.gettext("disclosed on {day}").format(day=t.date(line.disclosed_on))
            )
        if line.back_fen:
            lines.append(
                "  " + t.gettext("given back: {amount}").format(amount=t.money(line.back_fen))
            )
    lines.append(t.gettext("Charged: {amount}").format(amount=t.money(bill.charged_fen)))
    if bill.exempted_fen:
        lines.append(t.gettext("Reduced: {amount}").format(amount=t.money(bill.exempted_fen)))
    if bill.adjusted_fen:
        lines.append(t.gettext("Given back: {amount}").format(amount=t.money(bill.adjusted_fen)))
    lines.append(t.gettext("Paid: {amount}").format(amount=t.money(bill.paid_fen)))
    if bill.refunded_fen:
        lines.append(t.gettext("Refunded: {amount}").format(amount=t.money(bill.refunded_fen)))
    if bill.balance_fen > 0:
        due = (
            t.gettext("Still to pay: {amount}, by {day}").format(
                amount=t.money(bill.balance_fen), day=t.date(bill.due_on)
            )
            if bill.due_on
            else t.gettext("Still to pay: {amount}").format(amount=t.money(bill.balance_fen))
        )
        lines.append("<b>" + due + "</b>")
    elif bill.balance_fen < 0:
        lines.append(
            "<b>"
            + t.gettext("The school owes you {amount}.").format(amount=t.money(-bill.balance_fen))
            + "</b>"
        )
    else:
        lines.append("<b>" + t.gettext("Settled: nothing to pay.") + "</b>")
    return lines


def family_text(t: Translator, found: FamilyBills) -> str:
    parts: list[str] = [t.gettext("Fees")]
    billed = 0
    for child in found.children:
        if not child.bills:
            parts.append(
                t.gettext("No bill has been issued for {child}.").format(
                    child=html.escape(child.child)
                )
            )
            continue
        for bill in child.bills:
            billed += 1
            parts.append("\n".join(bill_text(t, bill)))
    if billed > 1:
        total = found.balance_fen
        parts.append(
            "<b>"
            + (
                t.gettext("Your family in all: {amount} still to pay.").format(
                    amount=t.money(total)
                )
                if total > 0
                else t.gettext("Your family in all: nothing to pay.")
            )
            + "</b>"
        )
    parts.append(
        t.gettext(
            "Only fees the school disclosed may be charged. To pay, or if something looks "
            "wrong, contact the school."
        )
    )
    return "\n\n".join(parts)


async def show(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    if context.member is None or not context.member.has(Role.PARENT):
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    async with context.db.transaction() as session:
        found = await billing.family_bills(session, context.member)
    if found is None:
        await message.reply_text(t.gettext("This is for guardians linked to a child."))
        return
    url = disclosure_url(context.settings, found.school_code, t.locale)
    markup = (
        InlineKeyboardMarkup(
            [[InlineKeyboardButton(t.gettext("The school's disclosed fees"), url=url)]]
        )
        if url
        else None
    )
    await message.reply_text(family_text(t, found), parse_mode=ParseMode.HTML, reply_markup=markup)
